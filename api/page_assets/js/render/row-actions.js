// A key's buttons: edit scopes and revoke (active keys only), and show or hide its history.
// Each names its action in data-action, for the list's one click handler, and the key for
// screen readers.

import { el, visuallyHidden } from "../dom.js";

function actionButton(attrs, label, key) {
  return el("button", { type: "button", ...attrs }, label, visuallyHidden(` for “${key.name}”`));
}

// `detailId` is the id of the row that the editor and the history open in.
export function rowActions(key, { editing, historyOpen, detailId }) {
  const active = key.status === "active";
  return el(
    "div",
    { class: "row-actions" },
    active
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
    active
      ? actionButton(
          {
            class: "button button-small button-danger-outline",
            "data-testid": "revoke",
            "data-action": "revoke",
          },
          "Revoke",
          key,
        )
      : null,
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
