// The page's keyboard shortcuts, and the help dialog (index.html, #shortcuts) that lists them:
//
//   Esc               stop the answer being written (as Stop does: upstream too)
//   Ctrl+Shift+O      new chat (⌘+Shift+O on a Mac; Alt+Shift+N as well, which no browser keeps)
//   Shift+Esc, /      put the cursor in the message box ("/" only when not typing somewhere)
//   ?, Ctrl+/         this list ("?" only when not typing somewhere)
//
// Esc gives way to whatever else it closes first: a dialog, the sidebar over the chat on a
// small screen, the rename and feedback forms (their own handlers run first and claim it).
// "/" and "?" are plain characters, so they are only shortcuts outside text fields.

import { stopAnswer } from "./composer.js";
import { startNewChat } from "./conversation.js";
import { ui } from "./dom.js";
import { liveAnswer } from "./state.js";

const $ = (id) => document.getElementById(id);

function typing(target) {
  if (!(target instanceof Element)) return false;
  return target.closest("input, textarea, select, [contenteditable]:not([contenteditable='false'])") !== null;
}

function dialogOpen() {
  return document.querySelector("dialog[open]") !== null;
}

function openHelp() {
  const help = $("shortcuts");
  if (help.open) return;
  const back = document.activeElement;
  help.addEventListener(
    "close",
    () => {
      if (back && back.isConnected && typeof back.focus === "function") back.focus();
    },
    { once: true },
  );
  help.showModal();
  $("shortcuts-close").focus();
}

/** The shortcut `event` is, if any: "stop", "new-chat", "focus", "help". */
function shortcut(event) {
  const key = event.key;
  const mod = event.ctrlKey || event.metaKey;
  if (key === "Escape" && !mod && !event.altKey) return event.shiftKey ? "focus" : "stop";
  if (mod && event.shiftKey && !event.altKey && event.code === "KeyO") return "new-chat";
  if (event.altKey && event.shiftKey && !mod && event.code === "KeyN") return "new-chat";
  if (mod && !event.altKey && !event.shiftKey && key === "/") return "help";
  // a character: typed alone, or with AltGr (Ctrl+Alt) on layouts that need it
  const plain = !event.metaKey && event.ctrlKey === event.altKey;
  if (!plain || typing(event.target)) return null;
  if (key === "/") return "focus";
  if (key === "?") return "help";
  return null;
}

function onKeydown(event) {
  if (event.defaultPrevented || event.isComposing || dialogOpen()) return;
  const action = shortcut(event);
  if (!action) return;
  if (action === "stop") {
    const live = liveAnswer();
    // Esc in the sidebar is the sidebar's (it closes it, over the chat on a small screen)
    if (!live || live.stopping || ui.sidebar.contains(event.target)) return;
    event.preventDefault();
    stopAnswer(live);
    return;
  }
  if (ui.app.classList.contains("sidebar-open") && action !== "help") return;
  event.preventDefault();
  if (action === "new-chat") startNewChat({ focus: true });
  else if (action === "focus") ui.message.focus();
  else openHelp();
}

export function wireKeyboard() {
  document.addEventListener("keydown", onKeydown);
  $("shortcuts-close").addEventListener("click", () => $("shortcuts").close());
}
