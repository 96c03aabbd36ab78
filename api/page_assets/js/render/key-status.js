// Where a key stands: its expiry (with how long is left, and a warning near the end), its status
// badge, and whether it is live.

import { el, visuallyHidden } from "../dom.js";
import { dateTimeFormat, parseDate, timeEl } from "./time.js";

const DAY_MS = 24 * 3600 * 1000;

// Not ended for good: the key works (active), or can work again (suspended, blocked).
const LIVE = new Set(["active", "suspended", "blocked"]);
export const isLive = (key) => LIVE.has(key.status);

// Rotated, and the grace before the old key stops not over yet (when the list says so).
export const inGrace = (key) => Boolean(key.retires_at || key.successor_id) && isLive(key);

// What each status means, on hover and for screen readers.
const STATUS_TITLES = {
  active: "Accepted wherever its scopes allow.",
  suspended: "Suspended: refused everywhere until you resume it.",
  blocked:
    "Blocked by the operator’s key lifetime policy: this key lives longer than the policy " +
    "now allows, so it is refused. It is not revoked: it works again if the policy relaxes. " +
    "Rotate it for a key within the policy.",
  rotated: "Rotated: replaced by its successor, and no longer accepted.",
  revoked: "Revoked: refused for good.",
  expired: "Expired: refused for good.",
};

function timeLeft(ms) {
  if (ms <= 0) return "expiring now";
  const days = Math.ceil(ms / DAY_MS);
  return days <= 1 ? "expires within a day" : `expires in ${days} days`;
}

// Whether a live key expires within the next `days` days of `now` (epoch ms), as the API's
// `expiring_within_days` counts it.
export function expiresSoon(key, now, days) {
  const at = key.expires_at && parseDate(key.expires_at);
  if (!at || !isLive(key)) return false;
  const ms = at.getTime() - now;
  return ms > 0 && ms <= days * DAY_MS;
}

// The Expires cell's content: "never", or the date with how it stands at `now` (epoch ms).
export function expiryContent(key, now, warnDays) {
  if (!key.expires_at) return ["never"];
  const at = parseDate(key.expires_at);
  const parts = [timeEl(key.expires_at)];
  if (!at) return parts;
  if (isLive(key)) {
    const ms = at.getTime() - now;
    const soon = Math.ceil(ms / DAY_MS) < warnDays;
    parts.push(
      el(
        "span",
        {
          class: soon ? "expiry-relative expiry-soon" : "expiry-relative",
          "data-testid": soon ? "expiry-warning" : "expiry-relative",
        },
        soon ? [el("span", { "aria-hidden": "true" }, "⚠ "), visuallyHidden("Warning: ")] : null,
        timeLeft(ms),
      ),
    );
  } else if (key.status === "expired") {
    parts.push(el("span", { class: "expiry-relative" }, "expired"));
  }
  return parts;
}

// The badge, with what the status means; a key in its grace says when it stops.
export function statusBadge(key, now) {
  const title = STATUS_TITLES[key.status] || null;
  const badge = el(
    "span",
    { class: `status status-${key.status}`, "data-testid": "key-status", title },
    key.status,
  );
  // Said aloud only where the word alone leaves the reader asking why, or until when.
  const explain = key.status === "blocked" || key.status === "suspended";
  const parts = [badge, explain ? visuallyHidden(` (${title})`) : null];
  const retires = inGrace(key) && parseDate(key.retires_at);
  if (retires && retires.getTime() > now) {
    parts.push(
      el(
        "span",
        { class: "status-note", "data-testid": "key-retires" },
        "rotated; stops at ",
        timeEl(key.retires_at, dateTimeFormat),
      ),
    );
  }
  return parts;
}
