// The "Expiring soon" list at the top of the page: the live keys that expire within the
// warning window, soonest first, each with its name, prefix and how long it has left.

import { el } from "../dom.js";
import { expiresSoon } from "./key-status.js";
import { dateTimeFormat, parseDate } from "./time.js";

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "always" });
const UNITS = [
  ["day", 24 * 3600 * 1000],
  ["hour", 3600000],
  ["minute", 60000],
];

// "in 3 days", "in 5 hours", "in 2 minutes": the largest whole unit left.
export function relativeTime(ms) {
  for (const [unit, size] of UNITS) {
    if (ms >= size) return relative.format(Math.floor(ms / size), unit);
  }
  return relative.format(Math.max(0, Math.ceil(ms / 60000)), "minute");
}

// The keys to list, soonest first.
export function expiringKeys(keys, now, warnDays) {
  return keys
    .filter((key) => expiresSoon(key, now, warnDays))
    .sort((a, b) => parseDate(a.expires_at) - parseDate(b.expires_at));
}

export function expiringHint(warnDays) {
  return (
    `These keys stop working within ${warnDays} days. Rotate each one (or create a ` +
    "replacement) and put its new token in place before then."
  );
}

export function expiringItems(keys, now) {
  return keys.map((key) => {
    const at = parseDate(key.expires_at);
    return el(
      "li",
      { class: "expiring-key", "data-testid": "expiring-key", "data-key-id": key.id },
      el("strong", { class: "expiring-name" }, key.name),
      " ",
      el("code", { class: "key-prefix" }, `${key.prefix}…`),
      " expires ",
      el(
        "time",
        {
          datetime: key.expires_at,
          title: dateTimeFormat.format(at),
          "data-testid": "expiring-when",
        },
        relativeTime(at.getTime() - now),
      ),
      key.status === "active" ? null : ` (${key.status})`,
    );
  });
}
