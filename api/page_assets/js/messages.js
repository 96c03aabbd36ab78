// What the page tells the person beyond a single field: the alert at the top of the page, and
// status messages that screen readers announce.

import { ApiError } from "./api.js";
import { byId, el } from "./dom.js";

const PAGE = "/account/api-keys";

// An API failure in words a person can act on.
export function describeError(err) {
  const detail = err.body && err.body.error_description;
  switch (true) {
    case err.status === 0:
      return "Could not reach Anthra. Check your connection and try again.";
    case err.status === 401:
      return "You were signed out.";
    case err.status === 403 && err.body.error === "cross_site_request":
      return "The request was refused as cross-site. Reload the page and try again.";
    case err.status === 403:
      return `Not allowed: ${detail || "this session may not do that"}.`;
    case err.status === 404:
      return "That key no longer exists. The list has been refreshed.";
    case err.status === 409:
      return `${detail || "The key is no longer active"}. The list has been refreshed.`;
    case err.status === 503:
      return "Anthra is catching up. Try again in a moment.";
    case err.status >= 500:
      return `Something went wrong on Anthra’s side (${err.status}). Try again in a moment.`;
    default:
      return detail || `Unexpected answer from the server (${err.status}).`;
  }
}

// The alert takes a message or an ApiError; after a 401 it offers the way back in.
export function showAlert(err) {
  const message = typeof err === "string" ? err : describeError(err);
  const text = byId("page-alert-message");
  text.replaceChildren(message);
  if (err instanceof ApiError && err.status === 401) {
    text.append(" ", el("a", { href: PAGE }, "Reload the page to sign in again."));
  }
  byId("page-alert").hidden = false;
}

export function hideAlert() {
  byId("page-alert").hidden = true;
  byId("page-alert-message").replaceChildren();
}

export function announce(text) {
  const status = byId("status-message");
  status.textContent = "";
  // A fresh text node after a tick, so that repeating the same message is announced again.
  window.setTimeout(() => {
    status.textContent = text;
  }, 50);
}
