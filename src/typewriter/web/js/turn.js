// A turn of the conversation: one question and its answers, more than one after Regenerate,
// one shown at a time (the pager of each answer moves between them). Which answer is shown is
// part of what the controls are drawn from, so showing one calls changed().

import { showStoredImages } from "./attachments.js";
import { h } from "./dom.js";
import { t } from "./i18n.js";
import { changed, state } from "./state.js";

export class Turn {
  constructor(question) {
    // { id, text, images?: [data: URL], attachments?: [{url}] } or null (an answer whose
    // question is gone): images just sent are shown as they are, stored ones fetched
    this.question = question;
    this.answers = [];
    this.shown = -1;
    this.el = h("article", "turn");
    if (question) {
      const msg = h("div", "msg user");
      msg.append(h("h2", "visually-hidden", t("question.heading")));
      const bubble = h("div", "bubble", question.text); // text, never HTML
      const images = question.images || [];
      const stored = question.attachments || [];
      if (images.length || stored.length) {
        const gallery = h("div", "question-images");
        for (const src of images) {
          const img = h("img", "question-image");
          img.src = src;
          img.alt = t("image.attached");
          gallery.append(img);
        }
        showStoredImages(gallery, stored);
        msg.append(gallery);
      }
      msg.append(bubble);
      this.el.append(msg);
    }
    this.slot = h("div", "slot");
    this.el.append(this.slot);
  }

  add(answer, { show = true } = {}) {
    answer.turn = this;
    this.answers.push(answer);
    if (show) this.show(this.answers.length - 1);
    else changed();
  }

  removeAnswer(answer) {
    this.answers = this.answers.filter((a) => a !== answer);
    this.show(Math.min(this.shown, this.answers.length - 1));
  }

  show(index) {
    changed();
    if (index < 0 || index >= this.answers.length) {
      this.slot.replaceChildren();
      this.shown = -1;
      return;
    }
    this.shown = index;
    const answer = this.answers[index];
    this.slot.replaceChildren(answer.el);
    answer.flush();
  }
}

/** Draw every answer's pager and Regenerate from the state (a listener of onChange). */
export function refreshAnswers() {
  for (const turn of state.turns) for (const answer of turn.answers) answer.refreshTurnControls();
}
