// The API-keys page's controller: wires the page's events to the modules that call the API and
// re-render. Reading order for a newcomer: state.js (what the page knows), api.js (every
// request), render/ (data to DOM, nothing else), then the controller of the part to change:
// create-key.js, new-token.js, keys-table.js (with the "Expiring soon" list), edit-scopes.js,
// rotate-key.js, suspend-key.js, revoke-key.js.

import * as api from "./api.js";
import { byId, el } from "./dom.js";
import { clearEditError, closeEdit, saveScopes, toggleEdit } from "./edit-scopes.js";
import { wireCreateForm } from "./create-key.js";
import { loadKeys, showHistoryOf, toggleHistory } from "./keys-table.js";
import { hideAlert, showAlert } from "./messages.js";
import { wireTokenPanel } from "./new-token.js";
import { askRevoke, onDialogClose } from "./revoke-key.js";
import { askRotate, onRotateDialogClose } from "./rotate-key.js";
import { resume, suspend } from "./suspend-key.js";
import { findKey, state } from "./state.js";

async function loadAccount() {
  const who = byId("whoami");
  try {
    const account = await api.account();
    state.userId = account.user_id;
    who.replaceChildren("Signed in as ", el("strong", {}, state.userId));
  } catch (err) {
    who.replaceChildren(err.status === 401 ? "Not signed in" : "");
    if (err.status === 401) showAlert(err);
  }
}

// The key a control in the table belongs to.
function keyOf(node) {
  const row = node.closest('[data-testid="key-row"]');
  return row ? findKey(row.dataset.keyId) : null;
}

// Each takes the key of the row and the button pressed.
const ROW_ACTIONS = {
  edit: toggleEdit,
  rotate: askRotate,
  suspend,
  resume,
  revoke: askRevoke,
  history: toggleHistory,
  "cancel-edit": (key) => closeEdit(key.id),
  // a rotation in a history names the key on its other side
  "open-history": (_, button) => showHistoryOf(button.dataset.targetKey),
};

// One handler per kind of event for every key's row: the rows are rebuilt on each render.
function wireKeysTable() {
  const table = byId("keys-table");
  table.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    const key = button && keyOf(button);
    if (key) ROW_ACTIONS[button.dataset.action](key, button);
  });
  table.addEventListener("submit", (event) => {
    const form = event.target.closest(".edit-form");
    if (!form) return;
    event.preventDefault();
    const key = keyOf(form);
    if (key) saveScopes(key, form);
  });
  table.addEventListener("change", (event) => {
    const form = event.target.closest(".edit-form");
    if (form) clearEditError(form);
  });
  table.addEventListener("keydown", (event) => {
    const form = event.key === "Escape" && event.target.closest(".edit-form");
    const key = form && keyOf(form);
    if (!key) return;
    event.preventDefault();
    closeEdit(key.id);
  });
}

async function loadConfig() {
  try {
    state.config = await api.pageConfig();
    return true;
  } catch (err) {
    byId("keys-summary").textContent = "Your keys could not be loaded.";
    showAlert(err);
    return false;
  }
}

async function start() {
  wireCreateForm();
  wireTokenPanel();
  wireKeysTable();
  byId("page-alert-dismiss").addEventListener("click", hideAlert);
  byId("confirm-dialog").addEventListener("close", onDialogClose);
  byId("cancel-revoke").addEventListener("click", () => byId("confirm-dialog").close("cancel"));
  byId("rotate-dialog").addEventListener("close", onRotateDialogClose);
  byId("cancel-rotate").addEventListener("click", () => byId("rotate-dialog").close("cancel"));

  loadAccount();
  if (await loadConfig()) await loadKeys();
}

start();
