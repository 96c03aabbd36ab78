// Where a key stands: its expiry (with how long is left, and a warning near the end) and its
// status badge.

import { el, visuallyHidden } from "../dom.js";
import { parseDate, timeEl } from "./time.js";

const DAY_MS = 86400000;
// An active key this close to its expiry is flagged, so that its successor is minted in time.
const WARN_DAYS = 7;

function timeLeft(ms) {
  if (ms <= 0) return "expiring now";
  const days = Math.ceil(ms / DAY_MS);
  return days <= 1 ? "expires within a day" : `expires in ${days} days`;
}

// The Expires cell's content: "never", or the date with how it stands at `now` (epoch ms).
export function expiryContent(key, now) {
  if (!key.expires_at) return ["never"];
  const at = parseDate(key.expires_at);
  const parts = [timeEl(key.expires_at)];
  if (!at) return parts;
  if (key.status === "active") {
    const ms = at.getTime() - now;
    const soon = Math.ceil(ms / DAY_MS) < WARN_DAYS;
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

export function statusBadge(key) {
  return el(
    "span",
    { class: `status status-${key.status}`, "data-testid": "key-status" },
    key.status,
  );
}
