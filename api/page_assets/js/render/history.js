// A key's history, oldest first: what happened, when, and who did it, in the API's own terms
// (the scopes a change added and removed, and the kind of actor, come with each event).

import { el, visuallyHidden } from "../dom.js";
import { dateTimeFormat, timeEl } from "./time.js";

const EVENT_LABELS = {
  Minted: "Minted",
  ScopesSet: "Scopes set",
  Revoked: "Revoked",
  Expired: "Expired",
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

// The events as a list; `userId` is who is reading, to say "you".
export function historyList(events, userId) {
  if (!events.length) return el("p", { class: "hint" }, "No events.");
  return el(
    "ol",
    { class: "history-list", "data-testid": "history" },
    events.map((event) => historyEvent(event, userId)),
  );
}

function historyEvent(event, userId) {
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
    el("p", { class: "history-details" }, eventDetails(event)),
  );
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

function eventDetails(event) {
  switch (event.type) {
    case "Minted":
      return [
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
      return [event.reason ? `Reason: ${event.reason}` : "No reason given."];
    case "Expired":
      return event.expires_at ? ["Reached its expiry, ", timeEl(event.expires_at), "."] : [];
    default:
      return [];
  }
}
