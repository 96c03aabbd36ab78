// The "Expiring soon" list at the top of the page: the live keys that expire within the
// warning window, soonest first, each with its name, prefix and how long it has left.

import { el } from "../dom.js";
import { expiresSoon } from "./key-status.js";
import { dateTimeFormat, parseDate } from "./time.js";

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "always" });
const MINUTE_MS = 60 * 1000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;

// "in 3 days", "in 5 hours", "in 2 minutes". Days are counted up, as the table's "expires in N
// days" counts them; hours to the nearest, so that a grace of an hour reads "in 1 hour".
export function relativeTime(ms) {
  if (ms >= DAY_MS) return relative.format(Math.ceil(ms / DAY_MS), "day");
  if (ms >= HOUR_MS - MINUTE_MS / 2) return relative.format(Math.round(ms / HOUR_MS), "hour");
  return relative.format(Math.max(0, Math.ceil(ms / MINUTE_MS)), "minute");
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
