// Telling the reader what happened: the notice above the message box (an alert, with a way
// to retry and a countdown after a 429 or 503) and a polite live region for screen readers.
// The notice's retry action and countdown timer are this widget's own and stay in here.

import { ui } from "./dom.js";
import { t } from "./i18n.js";

let announceFlip = false;

/** Tell screen-reader users what happened (a polite live region). */
export function announce(text) {
  // The same text twice in a row would not be read again: alternate a trailing space.
  announceFlip = !announceFlip;
  ui.status.textContent = announceFlip ? text : `${text}\u00a0`;
}

/** A failed call in words a reader can act on. */
export function describe(error) {
  if (error.network) return t("notice.network");
  if (error.code === "answer_in_progress") {
    return t("notice.inProgress");
  }
  if (error.status === 429) return t("notice.tooMany");
  if (error.status >= 500) return t("notice.server", { status: error.status, message: error.message });
  return error.message || String(error);
}

const notice = { kind: null, retry: null, timer: 0 };

export function showNotice(text, { retry = null, kind = "error", retryAfter = null } = {}) {
  clearInterval(notice.timer);
  notice.kind = kind;
  notice.retry = retry;
  ui.notice.hidden = false;
  ui.notice.dataset.kind = kind;
  ui.noticeRetry.hidden = !retry;
  ui.noticeText.textContent = text;
  const label = ui.noticeRetry.querySelector(".label") || ui.noticeRetry;
  label.textContent = t("notice.retry");
  if (retry && retryAfter) {
    // The countdown is on the button only: the alert itself is announced once.
    let left = Math.ceil(retryAfter);
    ui.noticeText.textContent = t("notice.wait", { text, seconds: left });
    const tick = () => {
      label.textContent = left > 0 ? t("notice.retryIn", { seconds: left }) : t("notice.retry");
      if (left <= 0) clearInterval(notice.timer);
      left -= 1;
    };
    tick();
    notice.timer = setInterval(tick, 1000);
  }
}

/** Hide the notice; with `kind`, only a notice of that kind (a fixed connection, say). */
export function hideNotice(kind = null) {
  if (kind && notice.kind !== kind) return;
  clearInterval(notice.timer);
  notice.kind = null;
  notice.retry = null;
  ui.notice.hidden = true;
}

/** Show a failed call, with `retry` to try it again; a cancelled call is no failure. */
export function showError(error, retry = null) {
  if (error && error.name === "AbortError") return;
  console.warn("typewriter:", error);
  showNotice(describe(error), { retry, retryAfter: error.retryAfter });
}

export function wireNotice() {
  ui.noticeRetry.addEventListener("click", () => {
    const retry = notice.retry;
    hideNotice();
    if (retry) retry();
  });
  ui.noticeDismiss.addEventListener("click", () => {
    hideNotice();
    ui.message.focus();
  });
  window.addEventListener("offline", () =>
    showNotice(t("notice.offline"), {
      kind: "connection",
    }),
  );
  window.addEventListener("online", () => hideNotice("connection"));
}
