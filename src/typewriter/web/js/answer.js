// The answer view: one answer, rendered as Markdown while it streams, with its note (how it
// ended), its actions (Copy, rating, Regenerate), the pager among the answers to its question
// (turn.js: moving to another is moving to its branch) and a form
// for a comment on it. Above it, who wrote it (its assistant and model, as stored or as the
// page asked), and the model's reasoning, if it shows any: a "Thinking" block
// that is open and types while the reasoning arrives, and folds when the answer begins (a
// click opens it again). A stored answer shows it folded. Where the upstream writing the
// answer failed and another one continued it, a small marker in the text says who did: live
// from the stream's `notice`, stored from the message's `sources` (markdown.js draws them).
//
// An answer's buttons do not call the code that acts on them: they dispatch an
// ANSWER_ACTION event ({ action, answer, rating }) that bubbles up the log, where feedback.js
// (copy, rate, comment) and composer.js (regenerate) listen. This keeps the view free of
// imports from the modules that create answers. An answer's status is part of the page's
// state (it decides Send or Stop, and Regenerate), so changing it calls changed().

import { h, makeButton } from "./dom.js";
import { t } from "./i18n.js";
import { ending, failureOf } from "./endings.js";
import { afterPaint } from "./log.js";
import { MarkdownView, withoutDanglingMarker } from "./markdown.js";
import { busy, changed, state } from "./state.js";

export const ANSWER_ACTION = "typewriter:answer";

export class Answer {
  #status = "pending"; // pending (asked, no stream yet), streaming, done
  #stopping = false;

  constructor(fields) {
    Object.assign(
      this,
      {
        id: null,
        streamId: null,
        conversationId: null,
        text: "",
        reasoning: "",
        finishReason: null,
        error: null,
        feedback: null,
        assistant: null, // who wrote it: the assistant's name and its model, when known
        model: null,
        seams: [], // where another upstream continued it: { at (in text), upstream, model }
      },
      fields, // may set status and stopping too
    );
    this.turn = null;
    this.follower = null;
    this.frame = 0;
    this.reasoningShown = 0; // how much of the reasoning the Thinking block holds
    this.build();
  }

  get status() {
    return this.#status;
  }

  set status(status) {
    this.#status = status;
    changed();
  }

  /** Stop was asked for and is not done yet. */
  get stopping() {
    return this.#stopping;
  }

  set stopping(stopping) {
    this.#stopping = stopping;
    changed();
  }

  get live() {
    return this.status === "pending" || this.status === "streaming";
  }

  /**
   * The text as shown (and copied). An answer still being written, or cut before its end, may
   * stop right after a list marker ("- ", "1. "): that item has no text yet, and an empty
   * bullet would flash while typing and stay under a cut answer, so the marker is left out.
   */
  get shownText() {
    const whole = this.status === "done" && this.finishReason === "stop";
    return whole ? this.text : withoutDanglingMarker(this.text);
  }

  /** The upstream failed and `to` (serving `model`) continues the answer from here. */
  continued({ to, model }) {
    this.seams.push({ at: this.text.length, upstream: to, model });
    this.schedule();
  }

  /** The seams as the text is shown: each with its label, none past the shown end. */
  get shownSeams() {
    const end = this.shownText.length;
    return this.seams.map(({ at, upstream, model }) => ({
      at: Math.min(at, end),
      label: t("answer.continuedBy", { model: model || upstream, upstream }),
    }));
  }

  /** Who wrote this answer, once known (a live answer learns it as it starts). */
  setAuthor(assistant, model) {
    if (assistant) this.assistant = assistant;
    if (model) this.model = model;
    this.update();
  }

  /** "echo · echo-model": the assistant and its model, each once (none when unknown). */
  get byline() {
    const parts = [this.assistant, this.model].filter(Boolean);
    return [...new Set(parts)].join(" · ");
  }

  act(action, detail = {}) {
    const event = { bubbles: true, detail: { action, answer: this, ...detail } };
    this.el.dispatchEvent(new CustomEvent(ANSWER_ACTION, event));
  }

  build() {
    this.el = h("div", "msg assistant");
    this.el.append(h("h2", "visually-hidden", t("answer.heading")));
    this.by = h("p", "answer-by");
    this.thinking = h("details", "thinking");
    this.thinking.append(h("summary", null, t("answer.thinking")));
    this.thinkingText = h("div", "thinking-text"); // plain text, never HTML
    this.thinking.append(this.thinkingText);
    this.body = h("div", "md");
    this.view = new MarkdownView(this.body);
    this.typing = h("p", "typing");
    this.typing.append(h("span"), h("span"), h("span"), h("span", "visually-hidden", t("answer.writing")));
    this.note = h("p", "answer-note");
    this.note.hidden = true;

    const small = "icon-button small";
    this.actions = h("div", "answer-actions");
    this.pager = h("div", "pager");
    this.prev = makeButton(t("answer.previous"), "chevron-left", {
      className: `${small} prev`,
      iconOnly: true,
      onClick: () => this.turn?.goToAnswer(-1),
    });
    this.next = makeButton(t("answer.next"), "chevron-right", {
      className: `${small} next`,
      iconOnly: true,
      onClick: () => this.turn?.goToAnswer(1),
    });
    this.count = h("span", "count");
    this.pager.append(this.prev, this.count, this.next);
    const button = (label, iconName, className, onClick) =>
      makeButton(label, iconName, { className, iconOnly: className === small, onClick });
    this.copy = button(t("answer.copy"), "copy", "action", () => this.act("copy"));
    this.good = button(t("answer.good"), "thumb-up", small, () => this.act("rate", { rating: 1 }));
    this.bad = button(t("answer.bad"), "thumb-down", small, () => this.act("rate", { rating: -1 }));
    this.regen = button(t("answer.regenerate"), "regenerate", "action", () => this.act("regenerate"));
    this.actions.append(this.pager, this.copy, this.good, this.bad, this.regen);

    this.el.append(this.by, this.thinking, this.body, this.typing, this.note, this.actions, this.buildFeedbackForm());
    this.update();
    this.refreshTurnControls();
  }

  buildFeedbackForm() {
    this.feedbackForm = h("form", "feedback-form");
    this.feedbackForm.hidden = true;
    const label = h("label", "feedback-label", t("answer.comment"));
    this.comment = h("textarea");
    this.comment.rows = 2;
    this.comment.maxLength = 10000;
    label.append(this.comment);
    const row = h("div", "feedback-row");
    const submit = h("button", "button primary small", t("answer.sendFeedback"));
    submit.type = "submit";
    const close = makeButton(t("common.close"), null, {
      className: "button subtle small",
      onClick: () => this.closeFeedback(),
    });
    row.append(submit, close);
    this.feedbackForm.append(label, row);
    this.feedbackForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.act("comment");
    });
    this.feedbackForm.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        this.closeFeedback();
      }
    });
    return this.feedbackForm;
  }

  append(text) {
    if (!text) return;
    if (this.text === "" && this.reasoning) this.thinking.open = false; // the answer begins
    this.text += text;
    this.schedule();
  }

  /** A piece of the model's reasoning: the Thinking block opens while it types. */
  appendReasoning(text) {
    if (!text) return;
    if (this.reasoning === "" && this.text === "") this.thinking.open = true;
    this.reasoning += text;
    this.schedule();
  }

  /** Render on the next animation frame (deltas in between are batched into one render). */
  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.paint();
    });
  }

  /** Render now (at the end of an answer, or when it is put on screen). */
  flush() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.paint();
  }

  paint() {
    if (!this.el.isConnected) return; // off screen: rendered when shown again
    this.paintReasoning();
    this.view.render(this.shownText, { growing: this.live, seams: this.shownSeams });
    this.update();
    afterPaint();
  }

  /** Add the reasoning that came since the last paint (the block only ever grows). */
  paintReasoning() {
    if (this.reasoning.length <= this.reasoningShown) return;
    const box = this.thinkingText;
    const following = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    box.append(this.reasoning.slice(this.reasoningShown));
    this.reasoningShown = this.reasoning.length;
    if (following) box.scrollTop = box.scrollHeight; // keep the newest thought in sight
  }

  replaceText(text, reasoning = this.reasoning, seams = []) {
    this.text = text;
    this.reasoning = reasoning;
    this.seams = seams;
    this.thinkingText.replaceChildren();
    this.reasoningShown = 0;
    this.view.reset();
  }

  finish(data) {
    this.status = "done";
    this.stopping = false;
    this.finishReason = data.finish_reason || "stop";
    this.flush();
    this.update();
  }

  /**
   * Draw what this answer alone decides: typing dots, the note under it, its actions. Copy
   * and the rating need text: an answer with none offers neither. An answer a failure ended
   * keeps Copy for the text it shows, but offers no rating: what failed was the service, not
   * the answer the model meant to give.
   */
  update() {
    const live = this.live;
    const byline = this.byline;
    if (this.by.textContent !== byline) this.by.textContent = byline;
    this.by.hidden = !byline;
    this.el.classList.toggle("streaming", live);
    this.el.setAttribute("aria-busy", String(live));
    const thinking = this.reasoning !== "";
    this.thinking.hidden = !thinking;
    this.thinking.classList.toggle("live", live && thinking && this.text === "");
    // While the model thinks, the Thinking block is what types: no dots under it.
    this.typing.hidden = !(live && this.text === "" && !thinking);
    const ended = live ? { text: "", kind: "info" } : ending(this);
    this.note.textContent = ended.text;
    this.note.hidden = !ended.text;
    this.note.classList.toggle("bad", ended.kind === "failed");
    this.note.classList.toggle("cut", ended.kind === "cut");
    this.actions.hidden = live || !this.id;
    const written = this.shownText.trim() !== "";
    this.copy.hidden = !written;
    this.good.hidden = this.bad.hidden = !written || failureOf(this) !== null;
    const rating = this.feedback ? this.feedback.rating : 0;
    this.good.setAttribute("aria-pressed", String(rating === 1));
    this.bad.setAttribute("aria-pressed", String(rating === -1));
  }

  /** Draw what depends on the turn and the page: the pager, and Regenerate. */
  refreshTurnControls() {
    const turn = this.turn;
    const { ids, index } = turn ? turn.answerChoices() : { ids: [], index: -1 };
    const many = ids.length > 1;
    this.pager.hidden = !many;
    if (many) {
      this.count.textContent = `${index + 1} / ${ids.length}`;
      this.count.setAttribute("aria-label", t("answer.count", { n: index + 1, total: ids.length }));
      this.prev.disabled = index <= 0 || busy();
      this.next.disabled = index >= ids.length - 1 || busy();
    }
    const last = turn && state.turns[state.turns.length - 1] === turn;
    const shown = turn && turn.answers[turn.shown] === this;
    this.regen.hidden = !(last && shown && !this.live && !busy());
  }

  openFeedback() {
    this.feedbackForm.hidden = false;
    this.comment.value = this.feedback?.comment || "";
    this.comment.focus();
  }

  closeFeedback() {
    const had = this.feedbackForm.contains(document.activeElement);
    this.feedbackForm.hidden = true;
    if (had) (this.feedback?.rating === -1 ? this.bad : this.good).focus();
  }
}

/**
 * The seams of a stored answer: where each part of its `sources` after the first begins.
 * The server counts characters (code points) and the page UTF-16 units, so a part's start is
 * converted: an emoji before a seam counts one there and two here.
 */
export function seamsFrom(sources, text) {
  const seams = [];
  let points = 0;
  let units = 0;
  for (const part of (sources || []).slice(1)) {
    while (points < part.start && units < text.length) {
      units += text.codePointAt(units) > 0xffff ? 2 : 1;
      points += 1;
    }
    seams.push({ at: units, upstream: part.upstream, model: part.model });
  }
  return seams;
}
