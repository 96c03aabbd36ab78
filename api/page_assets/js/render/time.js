// Instants as <time> elements, in the reader's locale and time zone.

import { el } from "../dom.js";

export const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
export const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  dateStyle: "medium",
  timeStyle: "short",
});

export function parseDate(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? null : date;
}

// The instant as a <time> (its full date and time on hover); an unreadable one as it came.
export function timeEl(iso, format = dateFormat) {
  const date = parseDate(iso);
  if (!date) return el("span", {}, String(iso));
  return el("time", { datetime: iso, title: dateTimeFormat.format(date) }, format.format(date));
}
