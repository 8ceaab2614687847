// The typewriter chat page.
//
// Asking is detached: POST /v1/chat answers 202 with the stream's events_url, and the answer
// is followed with EventSource (stream.js). A conversation that is opened (after a reload, in
// a second tab, by switching back to it) and still has an answer "streaming" follows that
// answer's stream from its first event and renders it from scratch: the stream replays
// everything, so the answer is shown whole, exactly once, and is never asked again.

import { api, streamEventsUrl } from "./api.js";
import { decorate, icon } from "./icons.js";
import { copyText, MarkdownView, markdownReady } from "./markdown.js";
import { Follower } from "./stream.js";

const $ = (id) => document.getElementById(id);
const ui = {
  app: $("app"),
  sidebar: $("sidebar"),
  scrim: $("scrim"),
  toggle: $("sidebar-toggle"),
  close: $("sidebar-close"),
  chat: $("chat"),
  newChat: $("new-chat"),
  list: $("conversations"),
  noConversations: $("no-conversations"),
  loadMore: $("load-more"),
  title: $("title"),
  renameForm: $("rename-form"),
  renameInput: $("rename-input"),
  renameCancel: $("rename-cancel"),
  actions: $("conversation-actions"),
  rename: $("rename"),
  clear: $("clear"),
  remove: $("delete"),
  assistant: $("assistant"),
  log: $("log"),
  messages: $("messages"),
  welcome: $("welcome"),
  jump: $("jump"),
  notice: $("notice"),
  noticeText: $("notice-text"),
  noticeRetry: $("notice-retry"),
  noticeDismiss: $("notice-dismiss"),
  composer: $("composer"),
  message: $("message"),
  send: $("send"),
  stop: $("stop"),
  status: $("status"),
  confirm: $("confirm"),
  confirmTitle: $("confirm-title"),
  confirmText: $("confirm-text"),
  confirmOk: $("confirm-ok"),
};

const MAX_FOLLOWED = 4; // open EventSources; browsers allow ~6 connections per host over HTTP/1.1
const ID = /^[A-Za-z0-9_-]{1,100}$/;
const narrow = window.matchMedia("(max-width: 760px)");

const state = {
  conversation: null, // { id, title, assistant } of the open conversation; null: a new chat
  turns: [],
  view: 0, // bumped on every switch, so late answers of an older view are dropped
  stick: true, // auto-scroll: true while the reader is at the bottom
  list: { items: [], cursor: null, token: 0 },
  assistants: [],
};
const followed = new Map(); // stream id -> Answer whose stream is followed

// -- small helpers ---------------------------------------------------------------------

function h(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined && text !== null) element.textContent = text;
  return element;
}

function makeButton(label, iconName, { className = "", iconOnly = false, onClick } = {}) {
  const button = h("button", className);
  button.type = "button";
  if (iconName) button.append(icon(iconName));
  if (iconOnly) {
    button.setAttribute("aria-label", label);
    button.title = label;
  } else {
    button.append(h("span", "label", label));
  }
  if (onClick) button.addEventListener("click", onClick);
  return button;
}

let announceFlip = false;
/** Tell screen-reader users what happened (a polite live region). */
function announce(text) {
  announceFlip = !announceFlip;
  ui.status.textContent = announceFlip ? text : `${text}\u00a0`;
}

function describe(error) {
  if (error.network) return "typewriter cannot be reached. Check your connection.";
  if (error.status === 429) return "Too many requests right now.";
  if (error.status >= 500) return `The server could not do that (${error.status}): ${error.message}`;
  return error.message || String(error);
}

// -- the notice: errors with a way to retry ----------------------------------------------

const notice = { kind: null, retry: null, timer: 0 };

function showNotice(text, { retry = null, kind = "error", retryAfter = null } = {}) {
  clearInterval(notice.timer);
  notice.kind = kind;
  notice.retry = retry;
  ui.notice.hidden = false;
  ui.notice.dataset.kind = kind;
  ui.noticeRetry.hidden = !retry;
  ui.noticeText.textContent = text;
  const label = ui.noticeRetry.querySelector(".label") || ui.noticeRetry;
  label.textContent = "Retry";
  if (retry && retryAfter) {
    // The countdown is on the button only: the alert itself is announced once.
    let left = Math.ceil(retryAfter);
    ui.noticeText.textContent = `${text} Wait ${left} s, then retry.`;
    const tick = () => {
      label.textContent = left > 0 ? `Retry (${left} s)` : "Retry";
      if (left <= 0) clearInterval(notice.timer);
      left -= 1;
    };
    tick();
    notice.timer = setInterval(tick, 1000);
  }
}

function hideNotice(kind = null) {
  if (kind && notice.kind !== kind) return;
  clearInterval(notice.timer);
  notice.kind = null;
  notice.retry = null;
  ui.notice.hidden = true;
}

function showError(error, retry = null) {
  if (error && error.name === "AbortError") return;
  console.warn("typewriter:", error);
  showNotice(describe(error), { retry, retryAfter: error.retryAfter });
}

// -- answers -----------------------------------------------------------------------------

const ENDINGS = {
  cancelled: "Stopped.",
  length: "Cut short: the answer reached its length limit.",
  timeout: "The model stopped responding, so the answer ends here.",
  error: "The answer failed.",
};

class Answer {
  constructor(fields) {
    Object.assign(
      this,
      {
        id: null,
        streamId: null,
        conversationId: null,
        text: "",
        status: "pending", // pending (asked, no stream yet), streaming, done
        finishReason: null,
        error: null,
        feedback: null,
        stopping: false,
      },
      fields,
    );
    this.turn = null;
    this.follower = null;
    this.frame = 0;
    this.build();
  }

  build() {
    this.el = h("div", "msg assistant");
    this.el.append(h("h2", "visually-hidden", "typewriter said:"));
    this.body = h("div", "md");
    this.view = new MarkdownView(this.body);
    this.typing = h("p", "typing");
    this.typing.append(h("span"), h("span"), h("span"), h("span", "visually-hidden", "Writing…"));
    this.note = h("p", "answer-note");
    this.note.hidden = true;

    this.actions = h("div", "answer-actions");
    this.pager = h("div", "pager");
    this.prev = makeButton("Previous answer", "chevron-left", {
      className: "icon-button small prev",
      iconOnly: true,
      onClick: () => this.turn?.show(this.turn.shown - 1),
    });
    this.next = makeButton("Next answer", "chevron-right", {
      className: "icon-button small next",
      iconOnly: true,
      onClick: () => this.turn?.show(this.turn.shown + 1),
    });
    this.count = h("span", "count");
    this.pager.append(this.prev, this.count, this.next);
    this.copy = makeButton("Copy", "copy", {
      className: "action",
      onClick: () => copyAnswer(this),
    });
    this.good = makeButton("Good answer", "thumb-up", {
      className: "icon-button small",
      iconOnly: true,
      onClick: () => rate(this, 1),
    });
    this.bad = makeButton("Bad answer", "thumb-down", {
      className: "icon-button small",
      iconOnly: true,
      onClick: () => rate(this, -1),
    });
    this.regen = makeButton("Regenerate", "regenerate", {
      className: "action",
      onClick: () => regenerate(this.turn),
    });
    this.actions.append(this.pager, this.copy, this.good, this.bad, this.regen);

    this.feedbackForm = h("form", "feedback-form");
    this.feedbackForm.hidden = true;
    const label = h("label", "feedback-label", "Comment (optional)");
    this.comment = h("textarea");
    this.comment.rows = 2;
    this.comment.maxLength = 10000;
    label.append(this.comment);
    const row = h("div", "feedback-row");
    const submit = h("button", "button primary small", "Send feedback");
    submit.type = "submit";
    const close = makeButton("Close", null, {
      className: "button subtle small",
      onClick: () => this.closeFeedback(),
    });
    row.append(submit, close);
    this.feedbackForm.append(label, row);
    this.feedbackForm.addEventListener("submit", (event) => {
      event.preventDefault();
      sendComment(this);
    });
    this.feedbackForm.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        this.closeFeedback();
      }
    });

    this.el.append(this.body, this.typing, this.note, this.actions, this.feedbackForm);
    this.update();
  }

  get live() {
    return this.status === "pending" || this.status === "streaming";
  }

  append(text) {
    if (!text) return;
    this.text += text;
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
    this.view.render(this.text);
    this.update();
    afterPaint();
  }

  replaceText(text) {
    this.text = text;
    this.view.reset();
  }

  finish(data) {
    this.status = "done";
    this.stopping = false;
    this.finishReason = data.finish_reason || "stop";
    this.flush();
    this.update();
  }

  update() {
    const live = this.live;
    this.el.classList.toggle("streaming", live);
    this.el.setAttribute("aria-busy", String(live));
    this.typing.hidden = !(live && this.text === "");
    let note = "";
    if (this.error) note = `Error: ${this.error.message || this.error.code || "unknown"}.`;
    if (!live && this.finishReason && this.finishReason !== "stop") {
      const ending = ENDINGS[this.finishReason] || `Ended: ${this.finishReason}.`;
      if (!(this.error && this.finishReason === "error")) note = note ? `${note} ${ending}` : ending;
      if (this.text === "" && this.finishReason === "cancelled") {
        note = "Stopped before any text was written.";
      }
    }
    if (!live && this.finishReason === "error") note += " Regenerate to try again.";
    this.note.textContent = note.trim();
    this.note.hidden = !note;
    this.note.classList.toggle("bad", Boolean(this.error) || this.finishReason === "error");
    this.actions.hidden = live || !this.id;
    const rating = this.feedback ? this.feedback.rating : 0;
    this.good.setAttribute("aria-pressed", String(rating === 1));
    this.bad.setAttribute("aria-pressed", String(rating === -1));
    this.refreshTurnControls();
  }

  refreshTurnControls() {
    const turn = this.turn;
    const many = turn ? turn.answers.length > 1 : false;
    this.pager.hidden = !many;
    if (many) {
      this.count.textContent = `${turn.shown + 1} / ${turn.answers.length}`;
      this.count.setAttribute("aria-label", `Answer ${turn.shown + 1} of ${turn.answers.length}`);
      this.prev.disabled = turn.shown <= 0;
      this.next.disabled = turn.shown >= turn.answers.length - 1;
    }
    const last = turn && state.turns[state.turns.length - 1] === turn;
    const newest = turn && turn.answers[turn.answers.length - 1] === this;
    this.regen.hidden = !(last && newest && !this.live && !busy());
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

class Turn {
  constructor(question) {
    this.question = question; // { id, text } or null (an answer whose question is gone)
    this.answers = [];
    this.shown = -1;
    this.el = h("article", "turn");
    if (question) {
      const msg = h("div", "msg user");
      msg.append(h("h2", "visually-hidden", "You said:"));
      msg.append(h("div", "bubble", question.text)); // text, never HTML
      this.el.append(msg);
    }
    this.slot = h("div", "slot");
    this.el.append(this.slot);
  }

  get answer() {
    return this.answers[this.shown] || null;
  }

  add(answer, { show = true } = {}) {
    answer.turn = this;
    this.answers.push(answer);
    if (show) this.show(this.answers.length - 1);
  }

  removeAnswer(answer) {
    this.answers = this.answers.filter((a) => a !== answer);
    this.show(Math.min(this.shown, this.answers.length - 1));
  }

  show(index) {
    if (index < 0 || index >= this.answers.length) {
      this.slot.replaceChildren();
      this.shown = -1;
      return;
    }
    this.shown = index;
    const answer = this.answers[index];
    this.slot.replaceChildren(answer.el);
    answer.flush();
    for (const a of this.answers) a.refreshTurnControls();
  }
}

/** The answer of the open conversation that is being written, if any. */
function liveAnswer() {
  for (let i = state.turns.length - 1; i >= 0; i -= 1) {
    for (const answer of state.turns[i].answers) if (answer.live) return answer;
  }
  return null;
}

function busy() {
  return liveAnswer() !== null;
}

// -- the message log and auto-scroll -------------------------------------------------------

// The reader is "at the bottom" only there (2 px for fractional scrolling): a reader who
// scrolled up even a little is reading, and the log stops following the answer until they
// scroll back down (or press "Jump to latest").
function atBottom() {
  return ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight <= 2;
}

/** The reader moves up: stop following at once, before the scroll itself is reported. */
function unstick() {
  if (ui.log.scrollHeight <= ui.log.clientHeight) return;
  state.stick = false;
  ui.jump.hidden = false;
}

function scrollToEnd() {
  ui.log.scrollTop = ui.log.scrollHeight;
}

function afterPaint() {
  if (state.stick) scrollToEnd();
  ui.jump.hidden = state.stick;
}

function appendTurn(turn) {
  state.turns.push(turn);
  ui.messages.append(turn.el);
  ui.welcome.hidden = true;
}

function removeTurn(turn) {
  state.turns = state.turns.filter((t) => t !== turn);
  turn.el.remove();
  ui.welcome.hidden = state.turns.length > 0;
}

function clearLog() {
  state.turns = [];
  ui.messages.replaceChildren(ui.welcome);
  ui.welcome.hidden = false;
  state.stick = true;
  ui.jump.hidden = true;
}

/** Bring every control in line with the state: Send or Stop, Regenerate, the header. */
function refreshControls() {
  const live = liveAnswer();
  ui.send.hidden = Boolean(live);
  ui.stop.hidden = !live;
  ui.stop.disabled = Boolean(live && live.stopping);
  for (const turn of state.turns) for (const answer of turn.answers) answer.refreshTurnControls();
  const title = state.conversation ? state.conversation.title : "New chat";
  if (!ui.renameForm.hidden && !state.conversation) endRename();
  ui.title.textContent = title;
  ui.actions.hidden = !state.conversation || !ui.renameForm.hidden;
  document.title = state.conversation ? `${title} · typewriter` : "typewriter";
  for (const link of ui.list.querySelectorAll("a")) {
    if (state.conversation && link.dataset.id === state.conversation.id) {
      link.setAttribute("aria-current", "page");
    } else {
      link.removeAttribute("aria-current");
    }
  }
}

// -- following streams ------------------------------------------------------------------

function inView(answer) {
  return Boolean(state.conversation) && answer.conversationId === state.conversation.id;
}

function follow(answer, url) {
  const follower = new Follower(url, {
    onStart(data) {
      if (!answer.id) answer.id = data.message_id;
      if (answer.status === "pending") answer.status = "streaming";
    },
    onDelta(text) {
      answer.append(text);
    },
    onError(data) {
      answer.error = data;
      answer.schedule();
      if (inView(answer)) announce(`Error: ${data.message || data.code}`);
    },
    onEnd(data) {
      followed.delete(answer.streamId);
      answer.finish(data);
      if (inView(answer)) {
        hideNotice("connection");
        refreshControls();
        const reason = data.finish_reason;
        announce(reason === "stop" ? "Answer complete." : ENDINGS[reason] || `Ended: ${reason}.`);
      }
    },
    onConnection(connection) {
      connectionChanged(answer, connection);
    },
  });
  answer.follower = follower;
  followed.set(answer.streamId, answer);
  follower.open();
  // Too many open streams would starve the page of connections: let the oldest ones that
  // are not on screen go (they keep generating on the server for its grace period).
  for (const [streamId, other] of followed) {
    if (followed.size <= MAX_FOLLOWED) break;
    if (inView(other)) continue;
    other.follower.close();
    followed.delete(streamId);
  }
}

function connectionChanged(answer, connection) {
  if (!inView(answer)) {
    if (connection === "closed") followed.delete(answer.streamId);
    return;
  }
  if (connection === "open") {
    hideNotice("connection");
  } else if (connection === "reconnecting") {
    showNotice("Connection lost. Reconnecting…", {
      kind: "connection",
      retry: () => answer.follower.open(),
    });
  } else {
    recover(answer);
  }
}

/** The browser gave up on a stream (gone, refused): show what the server stored instead. */
async function recover(answer) {
  const retry = () => {
    hideNotice();
    answer.follower.open();
  };
  try {
    const conversation = await api(`/v1/conversations/${encodeURIComponent(answer.conversationId)}`);
    const stored = conversation.messages.find((m) => m.id === answer.id);
    if (stored && stored.status !== "streaming") {
      followed.delete(answer.streamId);
      answer.replaceText(stored.text);
      if (stored.status === "interrupted") answer.error = { message: "the answer was interrupted" };
      answer.finish({ finish_reason: stored.finish_reason || "error" });
      hideNotice("connection");
      refreshControls();
      return;
    }
    showNotice("Lost the connection to this answer.", { kind: "connection", retry });
  } catch (error) {
    showNotice(`Lost the connection to this answer. ${describe(error)}`, {
      kind: "connection",
      retry,
    });
  }
}

// -- asking, stopping, regenerating -----------------------------------------------------------

function started(answer, reply) {
  answer.id = reply.message_id;
  answer.streamId = reply.stream_id;
  answer.conversationId = reply.conversation_id;
  if (answer.status === "pending") answer.status = "streaming";
  follow(answer, reply.events_url);
  if (answer.stopping) stopAnswer(answer);
}

async function send(message) {
  if (!message.trim() || busy()) return;
  hideNotice();
  const view = state.view;
  const conversation = state.conversation;
  const turn = new Turn({ id: null, text: message });
  const answer = new Answer({ conversationId: conversation ? conversation.id : null });
  appendTurn(turn);
  turn.add(answer);
  if (ui.message.value === message) {
    ui.message.value = "";
    autosize();
  }
  state.stick = true;
  scrollToEnd();
  refreshControls();

  const body = { message };
  if (ui.assistant.value) body.assistant = ui.assistant.value;
  if (conversation) body.conversation_id = conversation.id;
  let reply;
  try {
    reply = await api("/v1/chat", { method: "POST", body });
  } catch (error) {
    if (view !== state.view) return;
    removeTurn(turn);
    if (!ui.message.value) {
      ui.message.value = message;
      autosize();
    }
    refreshControls();
    showError(error, () => send(message));
    return;
  }
  if (view === state.view && !state.conversation) {
    state.conversation = {
      id: reply.conversation_id,
      title: message.trim().split("\n")[0].slice(0, 80) || "New chat",
      assistant: body.assistant || null,
    };
    setUrl(reply.conversation_id, "push");
  }
  started(answer, reply);
  if (view === state.view) refreshControls();
  loadList();
}

async function stopAnswer(answer = liveAnswer()) {
  if (!answer) return;
  answer.stopping = true;
  refreshControls();
  if (!answer.streamId) return; // asked but not started yet: stopped as soon as it starts
  try {
    await api(`/v1/streams/${encodeURIComponent(answer.streamId)}/cancel`, { method: "POST" });
  } catch (error) {
    answer.stopping = false;
    refreshControls();
    showError(error, () => stopAnswer(answer));
  }
}

async function regenerate(turn) {
  const previous = turn && turn.answers[turn.answers.length - 1];
  if (!previous || !previous.id || busy()) return;
  hideNotice();
  const view = state.view;
  const answer = new Answer({ conversationId: previous.conversationId });
  turn.add(answer);
  state.stick = true;
  refreshControls();
  ui.message.focus();
  const body = ui.assistant.value ? { assistant: ui.assistant.value } : {};
  let reply;
  try {
    reply = await api(`/v1/messages/${encodeURIComponent(previous.id)}/regenerate`, {
      method: "POST",
      body,
    });
  } catch (error) {
    if (view !== state.view) return;
    turn.removeAnswer(answer);
    refreshControls();
    showError(error, () => regenerate(turn));
    return;
  }
  started(answer, reply);
  if (view === state.view) refreshControls();
  loadList();
}

// -- copy and feedback -----------------------------------------------------------------

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
  const ok = await copyText(answer.text);
  announce(ok ? "Copied the answer." : "Could not copy the answer.");
  if (ok) flashCopied(answer.copy);
}

async function rate(answer, rating) {
  try {
    await api(`/v1/messages/${encodeURIComponent(answer.id)}/feedback`, {
      method: "POST",
      body: { rating },
    });
  } catch (error) {
    showError(error, () => rate(answer, rating));
    return;
  }
  const comment = answer.feedback && answer.feedback.rating === rating ? answer.feedback.comment : null;
  answer.feedback = { rating, comment };
  answer.update();
  announce("Thanks for the feedback. You can add a comment.");
  answer.openFeedback();
}

async function sendComment(answer) {
  const rating = answer.feedback ? answer.feedback.rating : 1;
  const comment = answer.comment.value.trim() || null;
  try {
    await api(`/v1/messages/${encodeURIComponent(answer.id)}/feedback`, {
      method: "POST",
      body: { rating, comment },
    });
  } catch (error) {
    showError(error, () => sendComment(answer));
    return;
  }
  answer.feedback = { rating, comment };
  answer.closeFeedback();
  announce("Feedback sent. Thank you.");
}

// -- conversations ---------------------------------------------------------------------

function conversationFromUrl() {
  const id = new URLSearchParams(location.search).get("c");
  return id && ID.test(id) ? id : null;
}

function setUrl(id, mode) {
  const url = id ? `/?c=${encodeURIComponent(id)}` : "/";
  if (location.pathname + location.search === url) return;
  if (mode === "push") history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

function answerFrom(message) {
  if (message.status === "streaming" && message.stream_id) {
    const running = followed.get(message.stream_id);
    if (running) return { answer: running, follow: false };
    // Render from scratch: the stream replays from its first event, so the stored partial
    // text is not needed (using it too would show its part twice).
    const answer = new Answer({
      id: message.id,
      streamId: message.stream_id,
      conversationId: message.conversation_id,
      status: "streaming",
      feedback: message.feedback,
    });
    return { answer, follow: true };
  }
  const answer = new Answer({
    id: message.id,
    streamId: message.stream_id,
    conversationId: message.conversation_id,
    text: message.text,
    status: "done",
    finishReason: message.finish_reason || (message.status === "done" ? "stop" : "error"),
    feedback: message.feedback,
    error: message.status === "interrupted" ? { message: "the answer was interrupted" } : null,
  });
  return { answer, follow: false };
}

function renderMessages(messages) {
  clearLog();
  const byQuestion = new Map();
  const toFollow = [];
  for (const message of messages) {
    if (message.role === "user") {
      const turn = new Turn({ id: message.id, text: message.text });
      byQuestion.set(message.id, turn);
      appendTurn(turn);
    } else if (message.role === "assistant") {
      let turn = (message.reply_to && byQuestion.get(message.reply_to)) || null;
      if (!turn) {
        turn = new Turn(null);
        appendTurn(turn);
      }
      const { answer, follow: needsFollow } = answerFrom(message);
      turn.add(answer, { show: false });
      if (needsFollow) toFollow.push(answer);
    }
  }
  for (const turn of state.turns) turn.show(turn.answers.length - 1);
  for (const answer of toFollow) {
    streamEventsUrl(answer.streamId).then(
      (url) => follow(answer, url),
      () => {}, // not followable now (signed out, gone): the next refresh tries again
    );
  }
}

function signature(messages) {
  return messages.map((m) => `${m.id}:${m.status}`).join(",");
}

async function openConversation(id, { push = false, quiet = false } = {}) {
  const view = ++state.view;
  if (push) setUrl(id, "push");
  setSidebar(false);
  if (!quiet) hideNotice();
  endRename();
  state.conversation = { id, title: state.conversation?.id === id ? state.conversation.title : "…" };
  clearLog();
  ui.welcome.hidden = true;
  ui.messages.setAttribute("aria-busy", "true");
  refreshControls();
  let data;
  try {
    data = await api(`/v1/conversations/${encodeURIComponent(id)}`);
  } catch (error) {
    if (view !== state.view) return;
    ui.messages.removeAttribute("aria-busy");
    if (error.status === 404) {
      startNewChat({ url: "replace" });
      showNotice("That conversation does not exist (any more).");
    } else {
      showError(error, () => openConversation(id));
    }
    return;
  }
  await markdownReady;
  if (view !== state.view) return;
  ui.messages.removeAttribute("aria-busy");
  state.conversation = { id: data.id, title: data.title, assistant: data.assistant };
  state.loaded = signature(data.messages);
  if (data.assistant && state.assistants.some((a) => a.name === data.assistant)) {
    ui.assistant.value = data.assistant;
  }
  renderMessages(data.messages);
  ui.welcome.hidden = state.turns.length > 0;
  state.stick = true;
  scrollToEnd();
  refreshControls();
}

/** Another tab may have asked or answered meanwhile: reload what changed (when idle). */
async function refreshConversation() {
  const conversation = state.conversation;
  if (!conversation || busy() || !ui.renameForm.hidden) return;
  const view = state.view;
  let data;
  try {
    data = await api(`/v1/conversations/${encodeURIComponent(conversation.id)}`);
  } catch {
    return;
  }
  if (view !== state.view || busy()) return;
  if (signature(data.messages) === state.loaded && data.title === conversation.title) return;
  openConversation(conversation.id, { quiet: true });
}

function startNewChat({ url = "push", focus = false } = {}) {
  state.view += 1;
  state.conversation = null;
  state.loaded = "";
  endRename();
  clearLog();
  setSidebar(false);
  if (url) setUrl(null, url);
  refreshControls();
  if (focus) ui.message.focus();
}

function route() {
  const id = conversationFromUrl();
  if (id) openConversation(id);
  else startNewChat({ url: location.search ? "replace" : false });
}

async function loadList({ more = false } = {}) {
  const token = ++state.list.token;
  const params = new URLSearchParams();
  const loaded = state.list.items.length;
  params.set("limit", String(more ? 20 : Math.min(100, Math.max(20, loaded))));
  if (more && state.list.cursor) params.set("cursor", state.list.cursor);
  let page;
  try {
    page = await api(`/v1/conversations?${params}`);
  } catch (error) {
    if (token === state.list.token && more) showError(error, () => loadList({ more: true }));
    return;
  }
  if (token !== state.list.token) return;
  state.list.items = more ? [...state.list.items, ...page.data] : page.data;
  state.list.cursor = page.next_cursor;
  const open = state.conversation && state.list.items.find((c) => c.id === state.conversation.id);
  if (open && ui.renameForm.hidden) state.conversation.title = open.title;
  renderList();
}

function renderList() {
  const focusedId = ui.list.contains(document.activeElement) ? document.activeElement.dataset.id : null;
  const items = state.list.items.map((conversation) => {
    const item = h("li");
    const link = h("a", "conversation", conversation.title);
    link.href = `/?c=${encodeURIComponent(conversation.id)}`;
    link.dataset.id = conversation.id;
    link.title = conversation.title;
    item.append(link);
    return item;
  });
  ui.list.replaceChildren(...items);
  ui.noConversations.hidden = items.length > 0;
  ui.loadMore.hidden = !state.list.cursor;
  if (focusedId) ui.list.querySelector(`a[data-id="${focusedId}"]`)?.focus();
  refreshControls();
}

// -- rename, clear, delete -------------------------------------------------------------

function startRename() {
  if (!state.conversation) return;
  ui.renameInput.value = state.conversation.title;
  ui.title.hidden = true;
  ui.renameForm.hidden = false;
  ui.actions.hidden = true;
  ui.renameInput.focus();
  ui.renameInput.select();
}

function endRename({ focus = false } = {}) {
  if (ui.renameForm.hidden) return;
  ui.renameForm.hidden = true;
  ui.title.hidden = false;
  ui.actions.hidden = !state.conversation;
  if (focus) ui.rename.focus();
}

async function saveRename() {
  const conversation = state.conversation;
  const title = ui.renameInput.value.trim();
  if (!conversation || !title) return;
  try {
    const renamed = await api(`/v1/conversations/${encodeURIComponent(conversation.id)}`, {
      method: "PATCH",
      body: { title },
    });
    conversation.title = renamed.title;
  } catch (error) {
    showError(error, saveRename);
    return;
  }
  endRename({ focus: true });
  refreshControls();
  announce("Conversation renamed.");
  loadList();
}

function confirmDialog({ title, text, ok }) {
  return new Promise((resolve) => {
    ui.confirmTitle.textContent = title;
    ui.confirmText.textContent = text;
    ui.confirmOk.textContent = ok;
    ui.confirm.returnValue = "";
    ui.confirm.addEventListener("close", () => resolve(ui.confirm.returnValue === "ok"), {
      once: true,
    });
    ui.confirm.showModal();
    ui.confirm.querySelector("#confirm-cancel").focus();
  });
}

/** Stop and stop following the answers still being written in a conversation. */
async function dropLive(conversationId) {
  for (const [streamId, answer] of followed) {
    if (answer.conversationId !== conversationId) continue;
    answer.follower.close();
    followed.delete(streamId);
    await api(`/v1/streams/${encodeURIComponent(streamId)}/cancel`, { method: "POST" }).catch(
      () => {},
    );
  }
}

async function deleteConversation() {
  const conversation = state.conversation;
  if (!conversation) return;
  const sure = await confirmDialog({
    title: "Delete this conversation?",
    text: `“${conversation.title}” and all its messages will be deleted. This cannot be undone.`,
    ok: "Delete",
  });
  if (!sure) {
    ui.remove.focus();
    return;
  }
  try {
    await dropLive(conversation.id);
    await api(`/v1/conversations/${encodeURIComponent(conversation.id)}`, { method: "DELETE" });
  } catch (error) {
    showError(error, deleteConversation);
    return;
  }
  state.list.items = state.list.items.filter((c) => c.id !== conversation.id);
  startNewChat({ url: "replace", focus: true });
  renderList();
  announce("Conversation deleted.");
  loadList();
}

async function clearHistory() {
  const conversation = state.conversation;
  if (!conversation) return;
  const sure = await confirmDialog({
    title: "Clear this conversation's history?",
    text: "Its messages are deleted and the assistant forgets them; the conversation stays.",
    ok: "Clear history",
  });
  if (!sure) {
    ui.clear.focus();
    return;
  }
  try {
    await dropLive(conversation.id);
    await api(`/v1/conversations/${encodeURIComponent(conversation.id)}/messages`, {
      method: "DELETE",
    });
  } catch (error) {
    showError(error, clearHistory);
    return;
  }
  if (state.conversation !== conversation) return;
  clearLog();
  state.loaded = "";
  refreshControls();
  ui.message.focus();
  announce("History cleared.");
}

// -- assistants ------------------------------------------------------------------------

async function loadAssistants() {
  try {
    state.assistants = (await api("/v1/assistants")).data || [];
  } catch (error) {
    state.assistants = [];
    showError(error, loadAssistants);
  }
  const options = state.assistants.map((assistant) => {
    const option = h("option", "", assistant.name);
    option.value = assistant.name;
    option.title = assistant.description || assistant.model || assistant.name;
    return option;
  });
  ui.assistant.replaceChildren(...options);
  ui.assistant.disabled = options.length === 0;
  const saved = localStorage.getItem("typewriter.assistant");
  const names = state.assistants.map((a) => a.name);
  const preferred = state.conversation?.assistant;
  ui.assistant.value = [preferred, saved, "default", names[0]].find((n) => n && names.includes(n)) || "";
}

// -- layout: the sidebar on small screens, the message box ---------------------------------

function sidebarOpen() {
  return ui.app.classList.contains("sidebar-open");
}

function setSidebar(open) {
  const modal = open && narrow.matches;
  ui.app.classList.toggle("sidebar-open", modal);
  ui.toggle.setAttribute("aria-expanded", String(modal));
  ui.scrim.hidden = !modal;
  ui.chat.inert = modal;
  if (modal) {
    const current = ui.list.querySelector('a[aria-current="page"]');
    (current || ui.newChat).focus();
  }
}

const autosizes = !CSS.supports("field-sizing", "content");
function autosize() {
  if (!autosizes) return;
  ui.message.style.height = "auto";
  ui.message.style.height = `${Math.min(ui.message.scrollHeight + 2, 200)}px`;
}

function submitMessage() {
  const message = ui.message.value;
  if (!message.trim()) return;
  if (busy()) {
    announce("An answer is being written: wait for it, or stop it.");
    return;
  }
  send(message);
}

// -- wiring ----------------------------------------------------------------------------

function wire() {
  decorate();
  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    submitMessage();
  });
  ui.message.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) {
      return;
    }
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    event.preventDefault();
    submitMessage();
  });
  ui.message.addEventListener("input", autosize);
  ui.stop.addEventListener("click", () => {
    stopAnswer();
    ui.message.focus();
  });
  ui.newChat.addEventListener("click", () => startNewChat({ focus: true }));
  ui.loadMore.addEventListener("click", () => loadList({ more: true }));
  ui.list.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-id]");
    if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    if (event.altKey) return;
    event.preventDefault();
    if (state.conversation && state.conversation.id === link.dataset.id) setSidebar(false);
    else openConversation(link.dataset.id, { push: true });
  });
  ui.rename.addEventListener("click", startRename);
  ui.renameForm.addEventListener("submit", (event) => {
    event.preventDefault();
    saveRename();
  });
  ui.renameCancel.addEventListener("click", () => endRename({ focus: true }));
  ui.renameInput.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      endRename({ focus: true });
    }
  });
  ui.clear.addEventListener("click", clearHistory);
  ui.remove.addEventListener("click", deleteConversation);
  ui.assistant.addEventListener("change", () => {
    localStorage.setItem("typewriter.assistant", ui.assistant.value);
  });
  ui.toggle.addEventListener("click", () => setSidebar(!sidebarOpen()));
  ui.close.addEventListener("click", () => {
    setSidebar(false);
    ui.toggle.focus();
  });
  ui.scrim.addEventListener("click", () => {
    setSidebar(false);
    ui.toggle.focus();
  });
  ui.sidebar.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && sidebarOpen()) {
      setSidebar(false);
      ui.toggle.focus();
    }
  });
  narrow.addEventListener("change", () => setSidebar(false));
  ui.noticeRetry.addEventListener("click", () => {
    const retry = notice.retry;
    hideNotice();
    if (retry) retry();
  });
  ui.noticeDismiss.addEventListener("click", () => {
    hideNotice();
    ui.message.focus();
  });
  ui.jump.addEventListener("click", () => {
    state.stick = true;
    scrollToEnd();
    ui.jump.hidden = true;
  });
  ui.log.addEventListener(
    "scroll",
    () => {
      state.stick = atBottom();
      ui.jump.hidden = state.stick;
    },
    { passive: true },
  );
  // Intent to scroll up is known before the scroll happens (a smooth scroll takes frames):
  // without these, the next rendered frame would pull the reader back down.
  ui.log.addEventListener("wheel", (event) => event.deltaY < 0 && unstick(), { passive: true });
  ui.log.addEventListener("touchmove", unstick, { passive: true });
  ui.log.addEventListener("touchend", () => {
    state.stick = atBottom();
    ui.jump.hidden = state.stick;
  });
  ui.log.addEventListener("keydown", (event) => {
    if (["ArrowUp", "PageUp", "Home"].includes(event.key)) unstick();
  });
  ui.log.addEventListener("pointerdown", (event) => event.target === ui.log && unstick());
  ui.messages.addEventListener("click", async (event) => {
    const button = event.target.closest(".copy-code");
    if (!button) return;
    const code = button.closest(".code-block")?.querySelector("code, pre");
    const ok = await copyText(code ? code.textContent : "");
    announce(ok ? "Copied the code." : "Could not copy the code.");
    if (ok) {
      button.classList.add("done");
      button.textContent = "Copied";
      setTimeout(() => {
        button.textContent = "Copy code";
        button.classList.remove("done");
      }, 1500);
    }
  });
  window.addEventListener("popstate", () => {
    // a fragment link (the skip link) also fires popstate: only a new conversation matters
    const id = conversationFromUrl();
    if (id && state.conversation && id === state.conversation.id) return;
    if (!id && !state.conversation) return;
    route();
  });
  window.addEventListener("offline", () =>
    showNotice("You are offline. The answer carries on when the connection is back.", {
      kind: "connection",
    }),
  );
  window.addEventListener("online", () => hideNotice("connection"));
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible") return;
    loadList();
    refreshConversation();
  });
}

async function main() {
  wire();
  const id = conversationFromUrl();
  await loadAssistants();
  route();
  loadList();
  if (!id) ui.message.focus();
}

main();
