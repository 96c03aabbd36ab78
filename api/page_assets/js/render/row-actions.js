// A key's buttons: edit scopes (active keys), rotate (active or blocked, not rotated already),
// suspend or resume, revoke (live keys), and show or hide its history. Each names its action in
// data-action, for the list's one click handler, and the key for screen readers.

import { el, visuallyHidden } from "../dom.js";
import { inGrace, isLive } from "./key-status.js";

function actionButton(attrs, label, key) {
  return el("button", { type: "button", ...attrs }, label, visuallyHidden(` for “${key.name}”`));
}

function simple(key, action, label, style = "") {
  return actionButton(
    { class: `button button-small ${style}`.trim(), "data-testid": action, "data-action": action },
    label,
    key,
  );
}

// `detailId` is the id of the row that the editor and the history open in.
export function rowActions(key, { editing, historyOpen, detailId }) {
  const { status } = key;
  const rotatable = (status === "active" || status === "blocked") && !inGrace(key);
  return el(
    "div",
    { class: "row-actions" },
    status === "active"
      ? actionButton(
          {
            class: "button button-small",
            "data-testid": "edit-scopes",
            "data-action": "edit",
            "aria-expanded": editing ? "true" : "false",
            "aria-controls": detailId,
          },
          "Edit scopes",
          key,
        )
      : null,
    rotatable ? simple(key, "rotate", "Rotate") : null,
    status === "active" || status === "blocked" ? simple(key, "suspend", "Suspend") : null,
    status === "suspended" ? simple(key, "resume", "Resume") : null,
    isLive(key) ? simple(key, "revoke", "Revoke", "button-danger-outline") : null,
    actionButton(
      {
        class: "button button-small button-quiet",
        "data-testid": "show-history",
        "data-action": "history",
        "aria-expanded": historyOpen ? "true" : "false",
        "aria-controls": detailId,
      },
      historyOpen ? "Hide history" : "History",
      key,
    ),
  );
}
