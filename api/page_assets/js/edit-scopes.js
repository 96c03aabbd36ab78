// Editing an active key's scopes in place, under its row.

import * as api from "./api.js";
import { clearFieldError, isBusy, setBusy, setFieldError } from "./dom.js";
import { announce, hideAlert } from "./messages.js";
import { failed, focusKeyControl, renderKeys } from "./keys-table.js";
import { replaceKey, state } from "./state.js";

const boxesOf = (form) => [...form.querySelectorAll('input[name="scopes"]')];
const errorOf = (form) => form.querySelector('[data-testid="error-scopes"]');

export function toggleEdit(key) {
  hideAlert();
  if (state.editing === key.id) {
    closeEdit(key.id);
    return;
  }
  state.editing = key.id;
  renderKeys();
  focusKeyControl(key.id, ["edit-scope-" + (key.scopes[0] || state.config.scopes[0].scope)]);
}

export function closeEdit(keyId) {
  state.editing = null;
  renderKeys();
  focusKeyControl(keyId, ["edit-scopes", "show-history"]);
}

// Ticking or unticking a box takes back the error it was shown for.
export function clearEditError(form) {
  clearFieldError(errorOf(form), boxesOf(form));
}

export async function saveScopes(key, form) {
  const button = form.querySelector('[data-testid="save-scopes"]');
  const error = errorOf(form);
  if (isBusy(button)) return;
  hideAlert();
  const inputs = boxesOf(form);
  const chosen = inputs.filter((box) => box.checked).map((box) => box.value);
  clearFieldError(error, inputs);
  if (!chosen.length) {
    setFieldError(
      error,
      inputs,
      "A key needs at least one scope. To stop a key working, revoke it.",
    );
    inputs[0].focus();
    return;
  }
  const unchanged =
    chosen.length === key.scopes.length && chosen.every((s) => key.scopes.includes(s));
  if (unchanged) {
    closeEdit(key.id);
    announce(`The scopes of “${key.name}” are unchanged.`);
    return;
  }
  setBusy(button, true, "Saving…");
  let updated;
  try {
    updated = await api.setScopes(key.id, chosen);
  } catch (err) {
    setBusy(button, false);
    if (err.status === 400 && err.field === "scopes") {
      setFieldError(error, inputs, err.message);
      inputs[0].focus();
    } else {
      await failed(err);
    }
    return;
  }
  replaceKey(updated);
  closeEdit(key.id);
  announce(`Saved: “${updated.name}” now has ${updated.scopes.join(", ")}.`);
}
