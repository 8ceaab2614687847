// How an answer ended, in a few plain words for the reader.
//
// A failure is told from the code of its `error` event, not from the server's message: that
// message is written for whoever reads the server's log and may name upstreams and exception
// classes. Only a code this page does not know shows the server's message. An answer loaded
// from the history has no error event: its status (`interrupted`) and finish reason
// (`timeout`, `error`) say the same in fewer words.

import { t } from "./i18n.js";

const FAILURES = new Map([
  ["interrupted", t("ending.interrupted")],
  ["upstream_unavailable", t("ending.unavailable")],
  ["upstream_error", t("ending.upstreamError")],
  ["upstream_timeout", t("ending.timeout")],
  ["upstream_event_too_large", t("ending.tooLarge")],
  ["upstream_incomplete", t("ending.incomplete")],
  ["broker_unavailable", t("ending.broker")],
  ["internal_error", t("ending.internal")],
]);

// finish reasons that are failures even without an error event (an answer from the history)
const FAILED_BY_REASON = new Map([
  ["interrupted", "interrupted"],
  ["timeout", "upstream_timeout"],
  ["error", ""],
]);

const RETRY = t("ending.retry");

/** The failure code of an ended answer: "" for an unknown failure, null for no failure. */
export function failureOf({ error, finishReason }) {
  if (error) return error.code || "";
  return FAILED_BY_REASON.get(finishReason) ?? null;
}

function sentence(text) {
  const trimmed = String(text).trim();
  if (!trimmed) return "";
  const first = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

/**
 * What to tell the reader under an answer that ended: `{ text, kind }`, kind "failed" (an
 * error ended it), "cut" (the server stopped it: a shutdown, a replica that died) or "info"
 * (stopped, cut at the length limit); `text` is "" for an answer that simply finished.
 */
export function ending({ error, finishReason, text }) {
  const failure = failureOf({ error, finishReason });
  if (failure !== null) {
    const said = FAILURES.get(failure) || sentence(error?.message || "") || t("ending.failed");
    return { text: t("ending.withRetry", { said, retry: RETRY }), kind: failure === "interrupted" ? "cut" : "failed" };
  }
  if (!finishReason || finishReason === "stop") return { text: "", kind: "info" };
  if (finishReason === "cancelled") {
    return { text: text ? t("ending.stopped") : t("ending.stoppedEmpty"), kind: "info" };
  }
  if (finishReason === "length") {
    return { text: t("ending.length"), kind: "info" };
  }
  if (finishReason === "content_filter") {
    return { text: t("ending.filter"), kind: "info" };
  }
  if (finishReason === "tool_calls") {
    return { text: t("ending.tool"), kind: "info" };
  }
  return { text: t("ending.other", { reason: finishReason }), kind: "info" };
}
