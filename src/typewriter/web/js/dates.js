// The date groups of the conversation list: Today, Yesterday, Previous 7 days, Older. Each
// conversation goes by its last activity (updated_at), in the browser's own time zone, with
// days counted by the calendar (a change of clock for summer time moves no day's boundary).

import { t } from "./i18n.js";

export const GROUPS = [t("date.today"), t("date.yesterday"), t("date.week"), t("date.older")];

function daysBefore(today, days) {
  const day = new Date(today);
  day.setDate(day.getDate() - days);
  return day.getTime();
}

/** The group of a conversation last active at `seconds` (since the epoch), as of `now`. */
export function groupOf(seconds, now = new Date()) {
  const today = new Date(now);
  today.setHours(0, 0, 0, 0);
  const at = seconds * 1000;
  if (at >= today.getTime()) return GROUPS[0]; // a clock a little ahead: still today
  if (at >= daysBefore(today, 1)) return GROUPS[1];
  if (at >= daysBefore(today, 7)) return GROUPS[2];
  return GROUPS[3];
}

/** `items` (newest first) in runs of one group each: [{ label, items }], in GROUPS order. */
export function groupByDate(items, now = new Date()) {
  const groups = [];
  for (const item of items) {
    const label = groupOf(item.updated_at, now);
    const last = groups[groups.length - 1];
    if (last && last.label === label) last.items.push(item);
    else groups.push({ label, items: [item] });
  }
  return groups;
}
