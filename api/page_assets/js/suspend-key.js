// Suspending a key (refused everywhere, reversibly: no confirmation asked) and resuming it.

import * as api from "./api.js";
import { announce, hideAlert } from "./messages.js";
import { failed, focusKeyControl, renderKeys } from "./keys-table.js";
import { replaceKey, state } from "./state.js";

async function change(key, call, focusOrder, message) {
  hideAlert();
  if (state.busy.has(key.id)) return;
  state.busy.add(key.id);
  let updated;
  try {
    updated = await call(key.id);
  } catch (err) {
    await failed(err);
    return;
  } finally {
    state.busy.delete(key.id);
  }
  replaceKey(updated);
  if (state.editing === key.id && updated.status !== "active") state.editing = null;
  renderKeys();
  focusKeyControl(key.id, [...focusOrder, "show-history"]);
  announce(message(updated));
}

export function suspend(key) {
  return change(key, api.suspendKey, ["resume"], (updated) =>
    updated.status === "suspended"
      ? `Suspended “${key.name}”: requests with it are refused until you resume it.`
      : `“${key.name}” is ${updated.status}.`,
  );
}

export function resume(key) {
  return change(key, api.resumeKey, ["suspend"], (updated) =>
    updated.status === "active"
      ? `Resumed “${key.name}”: requests with it are accepted again.`
      : `Resumed “${key.name}”; it is ${updated.status}.`,
  );
}
