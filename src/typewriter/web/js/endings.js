// How an answer ended, in a few plain words for the reader.
//
// A failure is told from the code of its `error` event, not from the server's message: that
// message is written for whoever reads the server's log and may name upstreams and exception
// classes. Only a code this page does not know shows the server's message. An answer loaded
// from the history has no error event: its status (`interrupted`) and finish reason
// (`timeout`, `error`) say the same in fewer words.

const FAILURES = new Map([
  ["interrupted", "The server stopped this answer."],
  ["upstream_unavailable", "The model is not reachable right now."],
  ["upstream_error", "The model failed while answering."],
  ["upstream_timeout", "The model took too long to answer."],
  ["upstream_event_too_large", "The model sent more than the server passes on at once."],
  ["upstream_incomplete", "The model's answer broke off before its end."],
  ["broker_unavailable", "The server lost track of this answer."],
  ["internal_error", "Something went wrong on the server."],
]);

// finish reasons that are failures even without an error event (an answer from the history)
const FAILED_BY_REASON = new Map([
  ["interrupted", "interrupted"],
  ["timeout", "upstream_timeout"],
  ["error", ""],
]);

const RETRY = "Regenerate to try again.";

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
    const said = FAILURES.get(failure) || sentence(error?.message || "") || "The answer failed.";
    return { text: `${said} ${RETRY}`, kind: failure === "interrupted" ? "cut" : "failed" };
  }
  if (!finishReason || finishReason === "stop") return { text: "", kind: "info" };
  if (finishReason === "cancelled") {
    return { text: text ? "Stopped." : "Stopped before any text was written.", kind: "info" };
  }
  if (finishReason === "length") {
    return { text: "Cut short: the answer reached its length limit.", kind: "info" };
  }
  if (finishReason === "content_filter") {
    return { text: "Stopped by the model's content filter.", kind: "info" };
  }
  if (finishReason === "tool_calls") {
    return { text: "The model asked for a tool, which this page cannot run.", kind: "info" };
  }
  return { text: `Ended: ${finishReason}.`, kind: "info" };
}
