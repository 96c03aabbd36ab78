// Scopes as tags (a key's scopes in the list) and as checkboxes (the scopes editor).

import { el } from "../dom.js";

// A key's scopes, each with what it grants on hover.
export function scopeTags(scopes, catalogue) {
  const description = (scope) => (catalogue.find((s) => s.scope === scope) || {}).description;
  return el(
    "ul",
    { class: "scope-tags", "data-testid": "key-scopes" },
    scopes.map((scope) => el("li", {}, el("code", { title: description(scope) || "" }, scope))),
  );
}

// One checkbox per scope of the catalogue, in its order, with its description; `checked` ticked.
// Ids start with `idPrefix`; test ids are `${testidPrefix}${scope}`.
export function scopeCheckboxes({ idPrefix, testidPrefix, catalogue, checked }) {
  return catalogue.map(({ scope, description }) => {
    const id = `${idPrefix}-${scope}`;
    return el(
      "li",
      { class: "scope-option" },
      el("input", {
        type: "checkbox",
        name: "scopes",
        value: scope,
        id,
        "data-testid": `${testidPrefix}${scope}`,
        checked: checked.includes(scope),
        "aria-describedby": `${id}-desc`,
      }),
      el(
        "label",
        { for: id },
        el("code", { class: "scope-name" }, scope),
        " ",
        el("span", { class: "scope-desc", id: `${id}-desc` }, description),
      ),
    );
  });
}
