// Rotating a key: a dialog that names it and asks how long the old key keeps working, then the
// successor's token in the new-token panel (shown once) and the list read again.
//
// Each confirmation gets one Idempotency-Key. When the answer is lost (the server could not be
// reached: status 0), the same request is sent again under the same key, so that the server
// retires the successor whose token never arrived instead of leaving two live successors.

import * as api from "./api.js";
import { byId } from "./dom.js";
import { announce, hideAlert } from "./messages.js";
import { failed, focusKeyControl, loadKeys } from "./keys-table.js";
import { showToken } from "./new-token.js";
import { rotationNote } from "./render/rotation-note.js";
import { state } from "./state.js";

const RETRIES = 2;
const RETRY_PAUSE_MS = 500;

const graceChoices = () => [...byId("grace-list").querySelectorAll('input[name="grace"]')];

export function askRotate(key) {
  hideAlert();
  if (state.busy.has(key.id)) return;
  const dialog = byId("rotate-dialog");
  const fallback = String(state.config.grace_default_seconds);
  for (const choice of graceChoices()) choice.checked = choice.value === fallback;
  if (typeof dialog.showModal !== "function") {
    const ok = window.confirm(
      `Rotate “${key.name}”? A new key replaces it; the old one keeps working for a while.`,
    );
    if (ok) rotate(key, Number(fallback));
    return;
  }
  state.pendingRotate = key;
  byId("rotate-key-name").textContent = key.name;
  dialog.returnValue = "";
  dialog.showModal();
}

// The dialog closed: rotate if it was confirmed, else put the focus back on the key.
export function onRotateDialogClose() {
  const dialog = byId("rotate-dialog");
  const key = state.pendingRotate;
  state.pendingRotate = null;
  if (!key) return;
  const chosen = graceChoices().find((choice) => choice.checked);
  if (dialog.returnValue === "confirm" && chosen) rotate(key, Number(chosen.value));
  else focusKeyControl(key.id, ["rotate", "show-history"]);
}

// A random UUID, from the browser's own generator (randomUUID wants a secure context).
function newIdempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  const parts = [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20)];
  return [...parts, hex.slice(20)].join("-");
}

const pause = (ms) => new Promise((resolve) => window.setTimeout(resolve, ms));

// The same request, under the same Idempotency-Key, until it is answered (or retries run out).
async function rotateOnce(key, graceSeconds) {
  const idempotencyKey = newIdempotencyKey();
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await api.rotateKey(key.id, graceSeconds, idempotencyKey);
    } catch (err) {
      if (err.status !== 0 || attempt >= RETRIES) throw err;
      await pause(RETRY_PAUSE_MS * (attempt + 1));
    }
  }
}

async function rotate(key, graceSeconds) {
  state.busy.add(key.id);
  let rotated;
  try {
    rotated = await rotateOnce(key, graceSeconds);
  } catch (err) {
    await failed(err);
    return;
  } finally {
    state.busy.delete(key.id);
  }
  const now = Date.now();
  showToken(rotated, rotationNote(rotated, key, now));
  await loadKeys();
  const stopped = new Date(rotated.predecessor_retires_at).getTime() <= now;
  announce(
    stopped
      ? `Rotated “${key.name}”: copy the new token; the old key has stopped working.`
      : `Rotated “${key.name}”: copy the new token; the old key keeps working for a while.`,
  );
}
