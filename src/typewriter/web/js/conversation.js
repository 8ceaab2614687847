// Opening a conversation (from the URL, the list, Back and Forward) or a new chat.
//
// What is shown is one branch of the conversation (GET /v1/conversations/{id}/branch): where a
// question was edited or an answer regenerated, the pagers move to another branch, which is
// fetched and shown in place (the log keeps its scroll, so the pager clicked stays under the
// pointer). A refresh reads the branch through the last message shown.
//
// A conversation that is opened (after a reload, in a second tab, by switching back to it)
// and still has an answer "streaming" follows that answer's stream from its first event and
// renders it from scratch: the stream replays everything, so the answer is shown whole,
// exactly once, and is never asked again. Each opening is a new view (state.js): the fetches
// of the view it replaces are aborted, and so is a rename under way (header.js listens).

import { api, streamEventsUrl } from "./api.js";
import { Answer, seamsFrom } from "./answer.js";
import { ui } from "./dom.js";
import { follow, followedAnswer } from "./following.js";
import { t } from "./i18n.js";
import { appendTurn, clearLog, restoreScroll, stickToEnd } from "./log.js";
import { markdownReady } from "./markdown.js";
import { hideNotice, showError, showNotice } from "./notice.js";
import { busy, newView, setConversation, setLoaded, state, viewSignal } from "./state.js";
import { setSidebar } from "./sidebar.js";
import { BRANCH, shownLeaf, Turn } from "./turn.js";

const ID = /^[A-Za-z0-9_-]{1,100}$/;

export function conversationFromUrl() {
  const id = new URLSearchParams(location.search).get("c");
  return id && ID.test(id) ? id : null;
}

/** Show conversation `id` (null: a new chat) in the address bar: "push" or "replace". */
export function setUrl(id, mode) {
  const url = id ? `/?c=${encodeURIComponent(id)}` : "/";
  if (location.pathname + location.search === url) return;
  if (mode === "push") history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

function answerFrom(message) {
  if (message.status === "streaming" && message.stream_id) {
    const running = followedAnswer(message.stream_id);
    if (running) return { answer: running, follow: false };
    // Render from scratch: the stream replays from its first event, so the stored partial
    // text is not needed (using it too would show its part twice).
    const answer = new Answer({
      id: message.id,
      streamId: message.stream_id,
      conversationId: message.conversation_id,
      status: "streaming",
      feedback: message.feedback,
      assistant: message.assistant,
      model: message.model,
    });
    return { answer, follow: true };
  }
  const answer = new Answer({
    id: message.id,
    streamId: message.stream_id,
    conversationId: message.conversation_id,
    text: message.text,
    reasoning: message.reasoning || "",
    status: "done",
    finishReason: message.finish_reason || (message.status === "done" ? "stop" : "error"),
    feedback: message.feedback,
    error: message.status === "interrupted" ? { code: "interrupted" } : null,
    assistant: message.assistant,
    model: message.model,
    seams: seamsFrom(message.sources, message.text),
  });
  return { answer, follow: false };
}

function renderMessages(messages) {
  clearLog();
  const byQuestion = new Map();
  const toFollow = [];
  for (const message of messages) {
    if (message.role === "user") {
      const turn = new Turn({
        id: message.id,
        text: message.text,
        attachments: message.attachments || [],
        siblings: message.siblings || [message.id],
      });
      byQuestion.set(message.id, turn);
      appendTurn(turn);
    } else if (message.role === "assistant") {
      let turn = (message.reply_to && byQuestion.get(message.reply_to)) || null;
      if (!turn) {
        turn = new Turn(null);
        appendTurn(turn);
      }
      turn.answerIds = message.siblings || [message.id];
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

/** The branch of conversation `id` through message `through` (null: the newest). */
function fetchConversation(id, signal, through = null) {
  const query = through ? `?through=${encodeURIComponent(through)}` : "";
  return api(`/v1/conversations/${encodeURIComponent(id)}/branch${query}`, { signal });
}

/** Show the branch through message `id` in place of the one on screen (a pager moved). */
async function showBranch(id) {
  const conversation = state.conversation;
  if (!conversation || busy()) return;
  const signal = newView();
  let data;
  try {
    data = await fetchConversation(conversation.id, signal, id);
  } catch (error) {
    if (!signal.aborted) showError(error, () => showBranch(id));
    return;
  }
  if (signal.aborted) return;
  const scrolled = ui.log.scrollTop;
  setLoaded(signature(data.messages));
  renderMessages(data.messages);
  restoreScroll(scrolled);
}

/** The pagers of the log ask for another branch (turn.js BRANCH events). */
export function wireBranches() {
  ui.messages.addEventListener(BRANCH, (event) => showBranch(event.detail.id));
}

export async function openConversation(id, { push = false, quiet = false, through = null } = {}) {
  const signal = newView();
  if (push) setUrl(id, "push");
  setSidebar(false);
  if (!quiet) hideNotice();
  setConversation({ id, title: state.conversation?.id === id ? state.conversation.title : "…" });
  clearLog();
  ui.welcome.hidden = true;
  ui.messages.setAttribute("aria-busy", "true");
  let data;
  try {
    data = await fetchConversation(id, signal, through);
  } catch (error) {
    if (signal.aborted) return;
    ui.messages.removeAttribute("aria-busy");
    if (error.status === 404) {
      startNewChat({ url: "replace" });
      showNotice(t("notice.noConversation"));
    } else {
      showError(error, () => openConversation(id));
    }
    return;
  }
  await markdownReady;
  if (signal.aborted) return;
  ui.messages.removeAttribute("aria-busy");
  setConversation({ id: data.id, title: data.title, assistant: data.assistant });
  setLoaded(signature(data.messages));
  if (data.assistant && state.assistants.some((a) => a.name === data.assistant)) {
    ui.assistant.value = data.assistant;
  }
  renderMessages(data.messages);
  ui.welcome.hidden = state.turns.length > 0;
  stickToEnd({ scroll: true });
}

/** Another tab may have asked or answered meanwhile: reload what changed (when idle). */
export async function refreshConversation() {
  const conversation = state.conversation;
  if (!conversation || busy() || state.renaming) return;
  const signal = viewSignal();
  const through = shownLeaf();
  let data;
  try {
    data = await fetchConversation(conversation.id, signal, through);
  } catch {
    return;
  }
  if (signal.aborted || busy()) return;
  if (signature(data.messages) === state.loaded && data.title === conversation.title) return;
  openConversation(conversation.id, { quiet: true, through });
}

export function startNewChat({ url = "push", focus = false } = {}) {
  newView();
  setConversation(null);
  setLoaded("");
  clearLog();
  setSidebar(false);
  if (url) setUrl(null, url);
  if (focus) ui.message.focus();
}

/** Show what the URL names: a conversation, or a new chat. */
export function route() {
  const id = conversationFromUrl();
  if (id) openConversation(id);
  else startNewChat({ url: location.search ? "replace" : false });
}
