// The form that replaces an active key's scopes, opened under the key's row. Its buttons and
// fields carry test ids the controller finds them by: save-scopes, cancel-scopes, error-scopes.

import { el } from "../dom.js";
import { scopeCheckboxes } from "./scopes.js";

export function scopesEditor(key, catalogue) {
  const prefix = `edit-${key.id}`;
  const errorId = `${prefix}-error-scopes`;
  const hintId = `${prefix}-hint`;
  return el(
    "form",
    { class: "edit-form", "data-testid": "edit-form", novalidate: true },
    el(
      "fieldset",
      { class: "scopes-fieldset", "aria-describedby": `${hintId} ${errorId}` },
      el("legend", {}, `Scopes of “${key.name}”`),
      el(
        "p",
        { class: "hint", id: hintId },
        "Pick the narrowest set of scopes that does the job. The change applies at once.",
      ),
      el(
        "ul",
        { class: "scope-list" },
        scopeCheckboxes({
          idPrefix: prefix,
          testidPrefix: "edit-scope-",
          catalogue,
          checked: key.scopes,
        }),
      ),
      el("p", { class: "field-error", id: errorId, "data-testid": "error-scopes", role: "alert" }),
    ),
    el(
      "div",
      { class: "actions" },
      el(
        "button",
        { type: "submit", class: "button button-primary", "data-testid": "save-scopes" },
        "Save scopes",
      ),
      el(
        "button",
        {
          type: "button",
          class: "button",
          "data-testid": "cancel-scopes",
          "data-action": "cancel-edit",
        },
        "Cancel",
      ),
    ),
  );
}
