// A turn of the conversation: one question and the answer shown to it, on the branch the page
// shows (branches: a question edited, an answer regenerated; see GET /v1/conversations/{id}/
// branch). The question has its own actions: Copy, Edit (a form in place of the bubble), and a
// pager "1 / 2" among the versions of the question when it was edited; the answer's pager moves
// among the answers to it (answer.js draws it from answerChoices()).
//
// Moving to another branch changes what follows it, so a pager does not switch anything here:
// it dispatches BRANCH ({ id }) for conversation.js to show the branch through that message.
// Sending an edit dispatches EDIT ({ turn, text }) for composer.js. Which answer is shown is
// part of what the controls are drawn from, so showing one calls changed().

import { showStoredImages } from "./attachments.js";
import { h, makeButton } from "./dom.js";
import { t } from "./i18n.js";
import { copyText } from "./markdown.js";
import { announce } from "./notice.js";
import { busy, changed, state } from "./state.js";

export const BRANCH = "typewriter:branch";
export const EDIT = "typewriter:edit";

const small = "icon-button small";

export class Turn {
  constructor(question, { answerIds = [] } = {}) {
    // { id, text, siblings?: [ids], images?: [data: URL], attachments?: [{url}] } or null (an
    // answer whose question is gone): images just sent are shown as they are, stored ones
    // fetched
    this.question = question;
    this.answers = [];
    this.answerIds = [...answerIds]; // the answers to the question, oldest first (the pager's)
    this.shown = -1;
    this.editing = false;
    this.el = h("article", "turn");
    if (question) this.el.append(this.buildQuestion(question));
    this.slot = h("div", "slot");
    this.el.append(this.slot);
  }

  buildQuestion(question) {
    const msg = h("div", "msg user");
    msg.append(h("h2", "visually-hidden", t("question.heading")));
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
    this.bubble = h("div", "bubble", question.text); // text, never HTML
    this.editor = this.buildEditor();
    this.questionActions = this.buildQuestionActions();
    msg.append(this.bubble, this.editor, this.questionActions);
    this.userMsg = msg;
    return msg;
  }

  buildQuestionActions() {
    const actions = h("div", "question-actions");
    this.questionPager = h("div", "version-pager");
    this.questionPrev = makeButton(t("question.previous"), "chevron-left", {
      className: `${small} prev`,
      iconOnly: true,
      onClick: () => this.goToQuestion(-1),
    });
    this.questionNext = makeButton(t("question.next"), "chevron-right", {
      className: `${small} next`,
      iconOnly: true,
      onClick: () => this.goToQuestion(1),
    });
    this.questionCount = h("span", "count");
    this.questionPager.append(this.questionPrev, this.questionCount, this.questionNext);
    this.copyQuestion = makeButton(t("question.copy"), "copy", {
      className: small,
      iconOnly: true,
      onClick: () => this.copy(),
    });
    this.editQuestion = makeButton(t("question.edit"), "pencil", {
      className: small,
      iconOnly: true,
      onClick: () => this.startEditing(),
    });
    actions.append(this.questionPager, this.copyQuestion, this.editQuestion);
    return actions;
  }

  buildEditor() {
    const form = h("form", "edit-form");
    form.hidden = true;
    this.editBox = h("textarea", "edit-box");
    this.editBox.rows = 3;
    this.editBox.setAttribute("aria-label", t("question.editBox"));
    const row = h("div", "edit-row");
    const cancel = makeButton(t("common.cancel"), null, {
      className: "button subtle small",
      onClick: () => this.stopEditing(),
    });
    const send = h("button", "button primary small", t("composer.send"));
    send.type = "submit";
    row.append(cancel, send);
    form.append(this.editBox, row);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendEdit();
    });
    this.editBox.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation(); // not the page's Esc (stop the answer)
        this.stopEditing();
      } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
        event.preventDefault();
        this.sendEdit();
      }
    });
    return form;
  }

  async copy() {
    const ok = await copyText(this.question.text);
    announce(ok ? t("question.copied") : t("question.copyFailed"));
  }

  startEditing() {
    if (busy() || !this.question?.id) return;
    this.editing = true;
    this.editBox.value = this.question.text;
    this.refreshQuestionControls();
    this.editBox.focus();
    this.editBox.setSelectionRange(this.editBox.value.length, this.editBox.value.length);
  }

  stopEditing() {
    this.editing = false;
    this.refreshQuestionControls();
    this.editQuestion.focus();
  }

  sendEdit() {
    const text = this.editBox.value;
    if (!text.trim()) return;
    if (busy()) {
      announce(t("composer.busy"));
      return;
    }
    this.el.dispatchEvent(new CustomEvent(EDIT, { bubbles: true, detail: { turn: this, text } }));
  }

  /** The versions of the question (edits), and which one this is. */
  questionChoices() {
    const id = this.question?.id ?? null;
    const ids = [...(this.question?.siblings || [])];
    if (!ids.includes(id)) ids.push(id);
    return { ids, index: ids.indexOf(id) };
  }

  /** The answers to the question, and which one is shown (a new one has no id yet). */
  answerChoices() {
    const answer = this.answers[this.shown];
    if (!answer) return { ids: [...this.answerIds], index: -1 };
    const ids = [...this.answerIds];
    if (!ids.includes(answer.id)) ids.push(answer.id);
    return { ids, index: ids.indexOf(answer.id) };
  }

  goToQuestion(step) {
    const { ids, index } = this.questionChoices();
    this.goTo(ids[index + step]);
  }

  goToAnswer(step) {
    const { ids, index } = this.answerChoices();
    this.goTo(ids[index + step]);
  }

  /** Show the branch through message `id` (conversation.js listens). */
  goTo(id) {
    if (!id || busy()) return;
    this.el.dispatchEvent(new CustomEvent(BRANCH, { bubbles: true, detail: { id } }));
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

  /** Draw the question's actions: its pager, Copy and Edit (none while it is being edited). */
  refreshQuestionControls() {
    if (!this.question) return;
    const known = Boolean(this.question.id);
    this.bubble.hidden = this.editing;
    this.editor.hidden = !this.editing;
    this.questionActions.hidden = this.editing || !known;
    const { ids, index } = this.questionChoices();
    const many = ids.length > 1;
    this.questionPager.hidden = !many;
    if (many) {
      this.questionCount.textContent = `${index + 1} / ${ids.length}`;
      this.questionCount.setAttribute(
        "aria-label",
        t("question.count", { n: index + 1, total: ids.length }),
      );
      this.questionPrev.disabled = index <= 0 || busy();
      this.questionNext.disabled = index >= ids.length - 1 || busy();
    }
    this.editQuestion.hidden = busy();
  }
}

/** Draw every turn's controls from the state (a listener of onChange). */
export function refreshTurns() {
  for (const turn of state.turns) {
    turn.refreshQuestionControls();
    for (const answer of turn.answers) answer.refreshTurnControls();
  }
}

/** The message the page shows last: the last turn's answer, else its question. */
export function shownLeaf() {
  const turn = state.turns[state.turns.length - 1];
  if (!turn) return null;
  return turn.answers[turn.shown]?.id || turn.question?.id || null;
}
