// The typewriter chat page: where its modules are wired together and the page starts.
//
//   state.js         the state, changed() and the view's AbortController
//   dom.js           the page's elements; notice.js what the reader is told
//   log.js           the turns on screen and auto-scroll; turn.js and answer.js draw them,
//                    endings.js says how an answer ended
//   following.js     the answers' streams (typewriter.js, the module other pages import too:
//                    EventSource resumed by Last-Event-ID, an expired ticket renewed)
//   composer.js      asking, stopping, regenerating, resending an edit; the assistant picker
//   attachments.js   images attached to a question (button, paste, drop) and shown in it
//   conversation.js  opening a conversation (one branch of it) or a new chat; list.js and
//                    sidebar.js the list
//   header.js        the title, rename, clear and delete; feedback.js copy and rating
//   signin.js        the API key: the sign-in dialog, Sign out (api.js asks it after a 401)
//   keyboard.js      the keyboard shortcuts and their help dialog ("?")
//
// The controls are drawn from the state in one place: the listeners registered below run
// once after each batch of changes (state.js), whoever made them.

import { refreshAttach, wireAttachments } from "./attachments.js";
import { loadAssistants, refreshComposer, wireComposer } from "./composer.js";
import {
  conversationFromUrl,
  refreshConversation,
  route,
  startNewChat,
  wireBranches,
} from "./conversation.js";
import { ui } from "./dom.js";
import { wireFeedback } from "./feedback.js";
import { refreshHeader, wireHeader } from "./header.js";
import { decorate } from "./icons.js";
import { wireKeyboard } from "./keyboard.js";
import { loadList, renderList, wireList } from "./list.js";
import { wireLog } from "./log.js";
import { wireNotice } from "./notice.js";
import { wireSearch } from "./search.js";
import { wireSidebar } from "./sidebar.js";
import { wireSignIn } from "./signin.js";
import { onChange, state } from "./state.js";
import { refreshTurns } from "./turn.js";

function wire() {
  onChange(refreshComposer); // Send or Stop
  onChange(refreshTurns); // each question's and answer's pager, Edit and Regenerate
  onChange(refreshHeader); // the title and the conversation's actions
  onChange(renderList); // the conversation list, and which one is open
  onChange(refreshAttach); // Attach, for an assistant that accepts images
  decorate();
  wireNotice();
  wireLog();
  wireBranches();
  wireComposer();
  wireAttachments();
  wireFeedback();
  wireHeader();
  wireList();
  wireSearch(); // the list's search box (it asks list.js for each search)
  wireSidebar();
  wireSignIn();
  wireKeyboard();
  ui.newChat.addEventListener("click", () => startNewChat({ focus: true }));
  window.addEventListener("popstate", () => {
    // a fragment link (the skip link) also fires popstate: only a new conversation matters
    const id = conversationFromUrl();
    if (id && state.conversation && id === state.conversation.id) return;
    if (!id && !state.conversation) return;
    route();
  });
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
