// One key in the keys table: a <tbody> holding its row (name, prefix, scopes, dates, status,
// buttons) and a detail row under it where its scopes editor and its history open.

import { el } from "../dom.js";
import { expiryContent, statusBadge } from "./key-status.js";
import { historySection } from "./history.js";
import { rowActions } from "./row-actions.js";
import { scopeTags } from "./scopes.js";
import { scopesEditor } from "./scopes-editor.js";
import { dateTimeFormat, timeEl } from "./time.js";

const COLUMNS = 8;

// `view`: the scope catalogue, whether this key's editor and history are open, now (ms), and
// how many days before its expiry a key is flagged.
export function keyRow(key, view) {
  const detailId = `key-${key.id}-detail`;
  return el(
    "tbody",
    { class: `key key-${key.status}`, "data-testid": "key-row", "data-key-id": key.id },
    mainRow(key, view, detailId),
    detailRow(key, view, detailId),
  );
}

function mainRow(key, view, detailId) {
  return el(
    "tr",
    { class: "key-main" },
    header(key),
    el("td", { "data-label": "Scopes" }, scopeTags(key.scopes, view.catalogue)),
    el("td", { "data-label": "Created" }, timeEl(key.created_at)),
    el(
      "td",
      { "data-label": "Expires", class: "key-expiry" },
      expiryContent(key, view.now, view.warnDays),
    ),
    el("td", { "data-label": "Last used", class: "key-last-used" }, lastUsed(key)),
    el("td", { "data-label": "Status" }, statusBadge(key, view.now)),
    el(
      "td",
      { class: "key-actions", "data-label": "Actions" },
      rowActions(key, { editing: view.editing, historyOpen: view.historyOpen, detailId }),
    ),
  );
}

// The key's name (the row's header cell) and its display prefix.
function header(key) {
  return [
    el(
      "th",
      { scope: "row", class: "key-name", "data-label": "Name" },
      el("span", { class: "name-text", "data-testid": "key-name-text" }, key.name),
    ),
    el(
      "td",
      { "data-label": "Key" },
      el("code", { class: "key-prefix", "data-testid": "key-prefix" }, `${key.prefix}…`),
    ),
  ];
}

function lastUsed(key) {
  return key.last_used_at
    ? el("span", { "data-testid": "key-last-used" }, timeEl(key.last_used_at, dateTimeFormat))
    : el("span", { "data-testid": "key-last-used", class: "muted" }, "never used");
}

// The history starts as "Loading…"; the controller fills it in when the events arrive.
function detailRow(key, view, detailId) {
  return el(
    "tr",
    { class: "key-detail", id: detailId, hidden: !(view.editing || view.historyOpen) },
    el(
      "td",
      { colspan: String(COLUMNS) },
      view.editing && key.status === "active" ? scopesEditor(key, view.catalogue) : null,
      view.historyOpen ? historySection(key, null) : null,
    ),
  );
}
