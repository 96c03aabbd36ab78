// Revoking a key, after a confirmation that names it (an in-page <dialog>, or the browser's
// own confirm() where <dialog> is missing).

import * as api from "./api.js";
import { byId } from "./dom.js";
import { announce, hideAlert } from "./messages.js";
import { failed, focusKeyControl, renderKeys } from "./keys-table.js";
import { replaceKey, state } from "./state.js";

export function askRevoke(key) {
  hideAlert();
  const dialog = byId("confirm-dialog");
  if (typeof dialog.showModal !== "function") {
    const ok = window.confirm(
      `Revoke “${key.name}”? Anything using it will be refused. This cannot be undone.`,
    );
    if (ok) revoke(key, "");
    return;
  }
  state.pendingRevoke = key;
  byId("confirm-key-name").textContent = key.name;
  byId("revoke-reason").value = "";
  dialog.returnValue = "";
  dialog.showModal();
}

// The dialog closed: revoke if it was confirmed, else put the focus back on the key.
export function onDialogClose() {
  const dialog = byId("confirm-dialog");
  const key = state.pendingRevoke;
  state.pendingRevoke = null;
  const reason = byId("revoke-reason").value.trim();
  byId("revoke-reason").value = "";
  if (!key) return;
  if (dialog.returnValue === "confirm") revoke(key, reason);
  else focusKeyControl(key.id, ["revoke", "show-history"]);
}

async function revoke(key, reason) {
  let revoked;
  try {
    revoked = await api.revokeKey(key.id, reason);
  } catch (err) {
    await failed(err);
    return;
  }
  replaceKey(revoked);
  if (state.editing === key.id) state.editing = null;
  renderKeys();
  focusKeyControl(key.id, ["show-history"]);
  announce(`Revoked “${key.name}”. Requests with it are now refused.`);
}
