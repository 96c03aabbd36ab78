// A key's history, oldest first: what happened, when, and who did it, in the API's own terms
// (the scopes a change added and removed, and the kind of actor, come with each event). A
// rotation names the key on the other side of it, as a button that opens that key's history.

import { el, visuallyHidden } from "../dom.js";
import { dateTimeFormat, timeEl } from "./time.js";

const EVENT_LABELS = {
  Minted: "Minted",
  ScopesSet: "Scopes set",
  Revoked: "Revoked",
  Expired: "Expired",
  Rotated: "Rotated",
  Suspended: "Suspended",
  Resumed: "Resumed",
};

// What is said after an actor, by its kind; a user is only "you" when it is the reader.
const ACTOR_NOTES = {
  key: " (the key itself)",
  system: " (automatic)",
};

// The section the history goes in, under the key's row; `content` is what it shows now.
export function historySection(key, content) {
  return el(
    "section",
    { class: "history", "aria-label": `History of “${key.name}”`, "data-history-for": key.id },
    historyContent(content),
  );
}

// The section's inside: a heading, then `content` (nodes), or the loading note if none.
export function historyContent(content) {
  return [
    el("h3", {}, "History"),
    content || el("p", { class: "hint history-loading" }, "Loading history…"),
  ];
}

export function historyFailed() {
  return el("p", { class: "hint" }, "The history could not be loaded.");
}

// The events as a list. `context`: `userId` (who is reading, to say "you"), `keyLabel` (a key's
// id to its {id, name, prefix}, or null when it is not listed) and `now` (epoch ms).
export function historyList(events, context) {
  if (!events.length) return el("p", { class: "hint" }, "No events.");
  return el(
    "ol",
    { class: "history-list", "data-testid": "history" },
    events.map((event) => historyEvent(event, context)),
  );
}

function historyEvent(event, { userId, keyLabel, now }) {
  return el(
    "li",
    {
      class: "history-event",
      "data-testid": "history-event",
      "data-type": event.type,
      "data-widened": event.type === "ScopesSet" && event.widened ? "true" : null,
    },
    el(
      "p",
      { class: "history-head" },
      el("strong", { class: "history-type" }, EVENT_LABELS[event.type] || event.type),
      " ",
      timeEl(event.at, dateTimeFormat),
      " by ",
      actorText(event, userId),
    ),
    el("p", { class: "history-details" }, eventDetails(event, keyLabel, now)),
  );
}

// The other key of a rotation: a button to its history when it is listed, else its id.
function keyLink(keyId, keyLabel) {
  const key = keyLabel(keyId);
  if (!key) return el("code", { "data-testid": "lineage-id" }, keyId);
  return el(
    "button",
    {
      type: "button",
      class: "link-button",
      "data-testid": "lineage-link",
      "data-action": "open-history",
      "data-target-key": key.id,
    },
    `“${key.name}” (${key.prefix}…)`,
    visuallyHidden(": show its history"),
  );
}

function rotatedDetails(event, keyLabel, now) {
  const stopped = new Date(event.retires_at).getTime() <= now;
  return [
    "Rotated into ",
    keyLink(event.successor_id, keyLabel),
    stopped ? "; stopped at " : "; stops at ",
    timeEl(event.retires_at, dateTimeFormat),
    ".",
  ];
}

function actorText(event, userId) {
  const you = event.actor_kind === "user" && userId !== null && event.actor_id === userId;
  return [el("code", {}, event.actor), you ? " (you)" : ACTOR_NOTES[event.actor_kind] || null];
}

function scopeText(list) {
  return list.length ? list.join(", ") : "none";
}

function scopeChanges(event) {
  const changes = [];
  if (event.added.length) changes.push(`added ${event.added.join(", ")}`);
  if (event.removed.length) changes.push(`removed ${event.removed.join(", ")}`);
  return changes.length ? ` (${changes.join("; ")})` : "";
}

// A leak report's revocation says where the scanner found the token: shown as text, never as a
// link (the reporter chose that URL).
function revokedDetails(event) {
  const reason = event.reason ? `Reason: ${event.reason}` : "No reason given.";
  const found = event.context && event.context.leak_url;
  if (!found) return [reason];
  const source = event.context.leak_source ? ` (${event.context.leak_source})` : "";
  return [
    reason,
    " ",
    el("span", { "data-testid": "leak-place" }, `Reported by a secret scanner, found at ${found}${source}.`),
  ];
}

function eventDetails(event, keyLabel, now) {
  switch (event.type) {
    case "Minted":
      return [
        event.predecessor_id
          ? ["Minted as the successor of ", keyLink(event.predecessor_id, keyLabel), ". "]
          : null,
        `Named “${event.name}”, key ${event.prefix}…, scopes ${scopeText(event.scopes)}, `,
        event.expires_at ? ["expires ", timeEl(event.expires_at)] : "no expiry",
        ".",
      ];
    case "ScopesSet":
      return [
        el("span", { class: "scopes-before" }, scopeText(event.previous_scopes)),
        el("span", { "aria-hidden": "true" }, " → "),
        visuallyHidden(" changed to "),
        el("span", { class: "scopes-after" }, scopeText(event.scopes)),
        scopeChanges(event),
      ];
    case "Revoked":
      return revokedDetails(event);
    case "Expired":
      return event.expires_at ? ["Reached its expiry, ", timeEl(event.expires_at), "."] : [];
    case "Rotated":
      return rotatedDetails(event, keyLabel, now);
    case "Suspended":
      return [event.reason ? `Reason: ${event.reason}` : "No reason given."];
    case "Resumed":
      return ["Accepted again."];
    default:
      return [];
  }
}
