// The composer: the message box, Send or Stop, the assistant picker; asking, stopping,
// regenerating, and resending a question edited in place (turn.js EDIT).
//
// A question goes on the branch on screen: it names the answer shown last as its parent_id, so
// the model's history is what the reader sees. An edit is a new branch beside the question
// edited (POST /v1/messages/{id}/edit): the turns from it on give way to the new question.
//
// Asking is detached: POST /v1/chat (or /regenerate, /edit) answers 202 with the stream's events_url,
// and the answer is followed from there (following.js). The POST is never cancelled when the
// reader opens another view meanwhile: the question is asked all the same and its answer is
// followed in the background; only what concerns the view (the new conversation's URL, putting
// the question back after a failure) is skipped once the view's signal is aborted.
//
// A conversation answers one question at a time: Send turns to Stop while an answer is being
// written here, and an answer being written elsewhere (another tab) refuses the question with
// 409 answer_in_progress; the page then says so and shows that answer, with its Stop.

import { api, client } from "./api.js";
import { Answer, ANSWER_ACTION } from "./answer.js";
import { pendingImages, refreshAttach, restorePending, takePending } from "./attachments.js";
import { refreshConversation, setUrl } from "./conversation.js";
import { h, ui } from "./dom.js";
import { follow } from "./following.js";
import { t } from "./i18n.js";
import { loadList } from "./list.js";
import { appendTurn, removeTurn, removeTurnsFrom, stickToEnd } from "./log.js";
import { announce, hideNotice, showError } from "./notice.js";
import { busy, liveAnswer, setAssistants, setConversation, state, viewSignal } from "./state.js";
import { EDIT, Turn } from "./turn.js";

const ASSISTANT_ITEM = "typewriter.assistant";
const autosizes = !CSS.supports("field-sizing", "content");

/** Grow the message box with its text where CSS cannot (no field-sizing). */
function autosize() {
  if (!autosizes) return;
  ui.message.style.height = "auto";
  ui.message.style.height = `${Math.min(ui.message.scrollHeight + 2, 200)}px`;
}

/** Who will write an answer asked of the picked assistant (none picked: the start event says). */
function author() {
  const name = ui.assistant.value || null;
  const listed = state.assistants.find((a) => a.name === name);
  return { assistant: name, model: listed ? listed.model || null : null };
}

function started(answer, reply) {
  answer.id = reply.message_id;
  const turn = answer.turn;
  if (turn && !turn.answerIds.includes(reply.message_id)) turn.answerIds.push(reply.message_id);
  if (turn?.question && !turn.question.id && reply.question_id) {
    turn.question.id = reply.question_id;
    const siblings = turn.question.siblings || [];
    turn.question.siblings = [...siblings.filter(Boolean), reply.question_id];
  }
  answer.streamId = reply.stream_id;
  answer.conversationId = reply.conversation_id;
  if (answer.status === "pending") answer.status = "streaming";
  follow(answer, reply.events_url);
  if (answer.stopping) stopAnswer(answer);
}

async function send(message) {
  if (!message.trim() || busy()) return;
  hideNotice();
  const view = viewSignal();
  const conversation = state.conversation;
  const images = pendingImages();
  const attached = takePending();
  const last = state.turns[state.turns.length - 1];
  const parent = conversation ? last?.answers[last.shown]?.id : null; // the branch on screen
  const turn = new Turn({ id: null, text: message, images: images.map((i) => i.data_url) });
  const answer = new Answer({ conversationId: conversation ? conversation.id : null, ...author() });
  appendTurn(turn);
  turn.add(answer);
  if (ui.message.value === message) {
    ui.message.value = "";
    autosize();
  }
  stickToEnd({ scroll: true });

  const body = { message };
  if (ui.assistant.value) body.assistant = ui.assistant.value;
  if (conversation) body.conversation_id = conversation.id;
  if (parent) body.parent_id = parent;
  if (images.length) body.images = images;
  let reply;
  try {
    reply = await api("/v1/chat", { method: "POST", body });
  } catch (error) {
    if (view.aborted) return;
    removeTurn(turn);
    if (!ui.message.value) {
      ui.message.value = message;
      autosize();
    }
    restorePending(attached);
    showError(error, () => send(message));
    if (error.code === "answer_in_progress") refreshConversation();
    return;
  }
  if (!view.aborted && !state.conversation) {
    setConversation({
      id: reply.conversation_id,
      title: message.trim().split("\n")[0].slice(0, 80) || t("chat.new"),
      assistant: body.assistant || null,
    });
    setUrl(reply.conversation_id, "push");
  }
  started(answer, reply);
  loadList();
}

/** Stop the answer being written (Stop, or Esc: keyboard.js); it stops upstream too. */
export async function stopAnswer(answer = liveAnswer()) {
  if (!answer) return;
  answer.stopping = true;
  if (!answer.streamId) return; // asked but not started yet: stopped as soon as it starts
  try {
    await client.stop(answer.streamId);
  } catch (error) {
    answer.stopping = false;
    showError(error, () => stopAnswer(answer));
  }
}

/** Ask `turn`'s question again as edited (`text`): a new branch, shown in place of the turn. */
async function resend(turn, text) {
  const edited = turn.question;
  if (!edited?.id || !text.trim() || busy()) return;
  hideNotice();
  const view = viewSignal();
  const conversation = state.conversation;
  const scrolled = ui.log.scrollTop;
  const fresh = new Turn({
    id: null,
    text,
    attachments: edited.attachments || [],
    siblings: [...(edited.siblings || [edited.id]), null],
  });
  const answer = new Answer({ conversationId: conversation?.id ?? null, ...author() });
  const replaced = state.turns.slice(state.turns.indexOf(turn));
  removeTurnsFrom(turn);
  appendTurn(fresh);
  fresh.add(answer);
  stickToEnd({ scroll: true });
  const body = { message: text };
  if (ui.assistant.value) body.assistant = ui.assistant.value;
  let reply;
  try {
    reply = await api(`/v1/messages/${encodeURIComponent(edited.id)}/edit`, {
      method: "POST",
      body,
    });
  } catch (error) {
    if (view.aborted) return;
    removeTurn(fresh); // the branch that was there comes back, the edit still open
    for (const back of replaced) appendTurn(back);
    ui.log.scrollTop = scrolled;
    turn.startEditing();
    turn.editBox.value = text;
    showError(error, () => resend(turn, text));
    if (error.code === "answer_in_progress") refreshConversation();
    return;
  }
  started(answer, reply);
  loadList();
}

async function regenerate(turn) {
  const previous = turn && turn.answers[turn.shown];
  if (!previous || !previous.id || busy()) return;
  hideNotice();
  const view = viewSignal();
  const answer = new Answer({ conversationId: previous.conversationId, ...author() });
  turn.add(answer);
  stickToEnd();
  ui.message.focus();
  const body = ui.assistant.value ? { assistant: ui.assistant.value } : {};
  let reply;
  try {
    reply = await api(`/v1/messages/${encodeURIComponent(previous.id)}/regenerate`, {
      method: "POST",
      body,
    });
  } catch (error) {
    if (view.aborted) return;
    turn.removeAnswer(answer);
    showError(error, () => regenerate(turn));
    if (error.code === "answer_in_progress") refreshConversation();
    return;
  }
  started(answer, reply);
  loadList();
}

function submitMessage() {
  const message = ui.message.value;
  if (!message.trim()) return;
  if (busy()) {
    announce(t("composer.busy"));
    return;
  }
  send(message);
}

/** Send or Stop, from the state (a listener of onChange). */
export function refreshComposer() {
  const live = liveAnswer();
  ui.send.hidden = Boolean(live);
  ui.stop.hidden = !live;
  ui.stop.disabled = Boolean(live && live.stopping);
}

/** Fill the assistant picker: the open conversation's assistant, else the last one picked, else
 * the server's default (which the operator chooses, so it is never assumed here). */
export async function loadAssistants() {
  let serverDefault = null;
  try {
    const listed = await api("/v1/assistants");
    setAssistants(listed.data || []);
    serverDefault = listed.default || null;
  } catch (error) {
    setAssistants([]);
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
  const saved = localStorage.getItem(ASSISTANT_ITEM);
  const names = state.assistants.map((a) => a.name);
  const preferred = state.conversation?.assistant;
  ui.assistant.value = [preferred, saved, serverDefault, names[0]].find((n) => n && names.includes(n)) || "";
  refreshAttach();
}

export function wireComposer() {
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
  ui.assistant.addEventListener("change", () => {
    localStorage.setItem(ASSISTANT_ITEM, ui.assistant.value);
  });
  ui.messages.addEventListener(ANSWER_ACTION, (event) => {
    if (event.detail.action === "regenerate") regenerate(event.detail.answer.turn);
  });
  ui.messages.addEventListener(EDIT, (event) => resend(event.detail.turn, event.detail.text));
}
