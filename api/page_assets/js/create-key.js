// The create form: checked here against the server's limits (from the page config) so that
// most mistakes are named before a request; whatever the API still refuses is shown next to
// the field it names.

import * as api from "./api.js";
import { byId, clearFieldError, setBusy, setFieldError } from "./dom.js";
import { hideAlert, showAlert } from "./messages.js";
import { loadKeys } from "./keys-table.js";
import { showToken } from "./new-token.js";
import { state } from "./state.js";

const FIELD_ORDER = ["name", "scopes", "expires_in_days"];

const nameInput = () => byId("key-name");
const expirySelect = () => byId("expiry");
const customInput = () => byId("expiry-custom");
const scopeBoxes = () => [...byId("scope-list").querySelectorAll('input[name="scopes"]')];

// Each API field: where its error goes, which controls it marks invalid, which one gets focus.
function fields() {
  return {
    name: { error: byId("error-name"), controls: [nameInput()], focus: nameInput() },
    scopes: { error: byId("error-scopes"), controls: scopeBoxes(), focus: scopeBoxes()[0] },
    expires_in_days: {
      error: byId("error-expires_in_days"),
      controls: [expirySelect(), customInput()],
      focus: expirySelect().value === "custom" ? customInput() : expirySelect(),
    },
  };
}

function syncExpiry() {
  const value = expirySelect().value;
  byId("custom-days").hidden = value !== "custom";
  customInput().required = value === "custom";
  byId("expiry-note").hidden = value !== "never";
}

// What the form says, as the mint request's body, with an error per field that breaks a rule.
export function checkNewKey({ name, scopes, expiry, customDays }, config) {
  const errors = {};
  const trimmed = name.trim();
  const maxName = config.name_max_length;
  if (!trimmed) errors.name = "Give the key a name, so you know later what it is for.";
  else if ([...trimmed].length > maxName) errors.name = `Use at most ${maxName} characters.`;
  if (!scopes.length) errors.scopes = "Pick at least one scope.";
  let days = null;
  if (expiry === "custom") {
    const raw = customDays.trim();
    const { expiry_min_days: min, expiry_max_days: max } = config;
    days = /^\d+$/.test(raw) ? Number(raw) : NaN;
    if (!(days >= min && days <= max)) {
      errors.expires_in_days = `Enter a whole number of days from ${min} to ${max}.`;
    }
  } else if (expiry !== "never") {
    days = Number(expiry);
  }
  return { body: { name: trimmed, scopes, expires_in_days: days }, errors };
}

function readForm() {
  return {
    name: nameInput().value,
    scopes: scopeBoxes()
      .filter((box) => box.checked)
      .map((box) => box.value),
    expiry: expirySelect().value,
    customDays: customInput().value,
  };
}

function clearErrors() {
  for (const field of Object.values(fields())) clearFieldError(field.error, field.controls);
}

// Every error next to its field; the focus on the first field at fault.
function showErrors(errors) {
  const all = fields();
  let first = null;
  for (const name of FIELD_ORDER) {
    if (!errors[name]) continue;
    setFieldError(all[name].error, all[name].controls, errors[name]);
    first = first || all[name].focus;
  }
  if (first) first.focus();
}

async function onCreate(event) {
  event.preventDefault();
  // Until the config has arrived there is nothing to check the form against.
  if (state.creating || !state.config) return;
  const button = byId("create-button");
  hideAlert();
  clearErrors();
  const { body, errors } = checkNewKey(readForm(), state.config);
  if (Object.keys(errors).length) {
    showErrors(errors);
    return;
  }
  state.creating = true;
  setBusy(button, true, "Creating…");
  let minted;
  try {
    minted = await api.mintKey(body);
  } catch (err) {
    if (err.status === 400 && err.field && FIELD_ORDER.includes(err.field)) {
      showErrors({ [err.field]: err.message });
    } else {
      showAlert(err);
    }
    return;
  } finally {
    state.creating = false;
    setBusy(button, false);
  }
  byId("create-form").reset();
  syncExpiry();
  showToken(minted);
  await loadKeys();
}

export function wireCreateForm() {
  byId("create-form").addEventListener("submit", onCreate);
  const clearExpiry = () =>
    clearFieldError(byId("error-expires_in_days"), [expirySelect(), customInput()]);
  expirySelect().addEventListener("change", () => {
    syncExpiry();
    clearExpiry();
  });
  customInput().addEventListener("input", clearExpiry);
  nameInput().addEventListener("input", () => clearFieldError(byId("error-name"), [nameInput()]));
  byId("scope-list").addEventListener("change", () =>
    clearFieldError(byId("error-scopes"), scopeBoxes()),
  );
  syncExpiry();
}
