// The keys table and the "Expiring soon" list above it: read the list, render both from the
// state, keep the keyboard focus across re-renders, and open or close a key's history.

import * as api from "./api.js";
import { byId } from "./dom.js";
import { showAlert } from "./messages.js";
import { sortKeys, summaryText } from "./render/key-list.js";
import { expiringHint, expiringItems, expiringKeys } from "./render/expiring-soon.js";
import { historyContent, historyFailed, historyList } from "./render/history.js";
import { keyRow } from "./render/key-row.js";
import { findKey, keyLabel, setKeys, state } from "./state.js";

export async function loadKeys() {
  let keys;
  try {
    keys = await api.listKeys();
  } catch (err) {
    byId("keys-summary").textContent = "Your keys could not be loaded.";
    showAlert(err);
    return;
  }
  setKeys(keys);
  renderKeys();
}

// After a 404 or 409 the list is out of date: show the error and read the list again.
export async function failed(err) {
  showAlert(err);
  if (err instanceof api.ApiError && (err.status === 404 || err.status === 409)) {
    await loadKeys();
  }
}

// Re-rendering replaces the rows; the focus stays on the same control of the same key.
export function renderKeys() {
  const kept = focusedControl();
  const table = byId("keys-table");
  for (const body of [...table.tBodies]) body.remove();
  byId("keys-summary").textContent = summaryText(state.keys);
  table.hidden = state.keys.length === 0;
  const now = Date.now();
  const warnDays = state.config.expiry_warning_days;
  renderExpiring(now, warnDays);
  for (const key of sortKeys(state.keys)) {
    const view = {
      catalogue: state.config.scopes,
      editing: state.editing === key.id,
      historyOpen: state.openHistory.has(key.id),
      now,
      warnDays,
    };
    table.append(keyRow(key, view));
  }
  for (const id of state.openHistory) loadHistory(id);
  if (kept) focusKeyControl(kept.keyId, [kept.testid, "show-history"]);
}

// The live keys that expire within the warning window, at the top; hidden when there are none.
function renderExpiring(now, warnDays) {
  const soon = expiringKeys(state.keys, now, warnDays);
  byId("expiring-hint").textContent = expiringHint(warnDays);
  byId("expiring-list").replaceChildren(...expiringItems(soon, now));
  byId("expiring-soon").hidden = soon.length === 0;
}

// The row of a key, for the controllers that act on it.
export function keyRowOf(keyId) {
  return [...document.querySelectorAll('[data-testid="key-row"]')].find(
    (row) => row.dataset.keyId === keyId,
  );
}

function focusedControl() {
  const active = document.activeElement;
  const row = active && active.closest && active.closest('[data-testid="key-row"]');
  if (!row || !active.dataset.testid) return null;
  return { keyId: row.dataset.keyId, testid: active.dataset.testid };
}

// Focus the first of `testids` that the key's row has; false if none.
export function focusKeyControl(keyId, testids) {
  const row = keyRowOf(keyId);
  if (!row) return false;
  for (const testid of testids) {
    const control = row.querySelector(`[data-testid="${testid}"]`);
    if (control) {
      control.focus();
      return true;
    }
  }
  return false;
}

export function toggleHistory(key) {
  if (state.openHistory.has(key.id)) state.openHistory.delete(key.id);
  else state.openHistory.add(key.id);
  renderKeys();
  focusKeyControl(key.id, ["show-history"]);
}

// From a rotation in a history: open the other key's history and take the focus there.
export function showHistoryOf(keyId) {
  const key = findKey(keyId);
  if (!key) return;
  state.openHistory.add(key.id);
  renderKeys();
  const row = keyRowOf(key.id);
  if (row) row.scrollIntoView({ block: "nearest" });
  focusKeyControl(key.id, ["show-history"]);
}

function historyContainer(keyId) {
  return [...document.querySelectorAll("[data-history-for]")].find(
    (section) => section.dataset.historyFor === keyId,
  );
}

async function loadHistory(keyId) {
  let events;
  try {
    events = await api.keyHistory(keyId);
  } catch (err) {
    const container = historyContainer(keyId);
    if (container) container.replaceChildren(...historyContent(historyFailed()));
    showAlert(err);
    return;
  }
  const container = historyContainer(keyId);
  if (!container || !state.openHistory.has(keyId)) return;
  const context = { userId: state.userId, keyLabel, now: Date.now() };
  container.replaceChildren(...historyContent(historyList(events, context)));
}
