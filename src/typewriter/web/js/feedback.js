// Copying an answer and rating it (thumbs up or down, then an optional comment): the answer's
// buttons ask for these through ANSWER_ACTION events (answer.js), handled here.

import { api } from "./api.js";
import { ANSWER_ACTION } from "./answer.js";
import { ui } from "./dom.js";
import { t } from "./i18n.js";
import { icon } from "./icons.js";
import { copyText } from "./markdown.js";
import { announce, showError } from "./notice.js";

function flashCopied(button) {
  const svg = button.querySelector("svg");
  const check = icon("check");
  if (svg) svg.replaceWith(check);
  button.classList.add("done");
  setTimeout(() => {
    button.classList.remove("done");
    if (check.isConnected) check.replaceWith(icon("copy"));
  }, 1500);
}

async function copyAnswer(answer) {
  const ok = await copyText(answer.shownText);
  announce(ok ? t("feedback.copied") : t("feedback.copyFailed"));
  if (ok) flashCopied(answer.copy);
}

function sendFeedback(answer, body) {
  return api(`/v1/messages/${encodeURIComponent(answer.id)}/feedback`, { method: "POST", body });
}

async function rate(answer, rating) {
  try {
    await sendFeedback(answer, { rating });
  } catch (error) {
    showError(error, () => rate(answer, rating));
    return;
  }
  const comment = answer.feedback && answer.feedback.rating === rating ? answer.feedback.comment : null;
  answer.feedback = { rating, comment };
  answer.update();
  announce(t("feedback.thanks"));
  answer.openFeedback();
}

async function sendComment(answer) {
  const rating = answer.feedback ? answer.feedback.rating : 1;
  const comment = answer.comment.value.trim() || null;
  try {
    await sendFeedback(answer, { rating, comment });
  } catch (error) {
    showError(error, () => sendComment(answer));
    return;
  }
  answer.feedback = { rating, comment };
  answer.closeFeedback();
  announce(t("feedback.sent"));
}

export function wireFeedback() {
  ui.messages.addEventListener(ANSWER_ACTION, (event) => {
    const { action, answer, rating } = event.detail;
    if (action === "copy") copyAnswer(answer);
    else if (action === "rate") rate(answer, rating);
    else if (action === "comment") sendComment(answer);
  });
}
