// The token of a key just minted (or of a rotated key's successor), shown once. It lives only in
// `token` and the panel's DOM until "Done" or the page is left: never in storage, the URL or
// history.

import { byId } from "./dom.js";

let token = null;

// `note`: nodes said under the token (after a rotation, when the old key stops), or null.
export function showToken(minted, note = null) {
  token = minted.token;
  byId("token-value").textContent = token;
  byId("token-key-name").textContent = minted.name;
  byId("copy-status").textContent = "";
  byId("token-note").replaceChildren(...(note || []));
  byId("token-note").hidden = !note;
  byId("token-panel").hidden = false;
  byId("token-heading").focus();
}

export function clearToken() {
  token = null;
  byId("token-value").textContent = "";
  byId("token-key-name").textContent = "";
  byId("copy-status").textContent = "";
  byId("token-note").replaceChildren();
  byId("token-note").hidden = true;
  byId("token-panel").hidden = true;
  const selection = window.getSelection();
  if (selection) selection.removeAllRanges();
}

function selectToken() {
  const range = document.createRange();
  range.selectNodeContents(byId("token-value"));
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

export async function copyToken() {
  if (!token) return;
  const status = byId("copy-status");
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(token);
      status.textContent = "Copied to the clipboard.";
      return;
    } catch (_) {
      // fall through: select the text so that the person can copy it themselves
    }
  }
  selectToken();
  let copied = false;
  try {
    copied = document.execCommand("copy");
  } catch (_) {
    copied = false;
  }
  status.textContent = copied
    ? "Copied to the clipboard."
    : "The token is selected: press Ctrl+C (⌘C on a Mac) to copy it.";
}

export function wireTokenPanel() {
  byId("copy-button").addEventListener("click", copyToken);
  byId("token-done").addEventListener("click", () => {
    clearToken();
    byId("keys-heading").focus();
  });
  // Leaving the page (or it going into the back/forward cache) forgets the token.
  window.addEventListener("pagehide", clearToken);
}
