// What the new-token panel says after a rotation: when the old key stops working.

import { el } from "../dom.js";
import { relativeTime } from "./expiring-soon.js";
import { dateTimeFormat, parseDate, timeEl } from "./time.js";

// `rotated`: the rotate answer; `oldKey`: the key it replaced ({name, prefix}); `now`: epoch ms.
export function rotationNote(rotated, oldKey, now) {
  const retires = parseDate(rotated.predecessor_retires_at);
  const old = ["The old key ", el("code", {}, `${oldKey.prefix}…`)];
  if (!retires || retires.getTime() <= now) {
    return [...old, " has stopped working: put this token in place now."];
  }
  return [
    ...old,
    " keeps working until ",
    timeEl(rotated.predecessor_retires_at, dateTimeFormat),
    ` (${relativeTime(retires.getTime() - now)}): put this token in place before then.`,
  ];
}
