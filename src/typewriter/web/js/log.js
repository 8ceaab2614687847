// The message log: the turns on screen, and auto-scroll.
//
// The log follows a growing answer while the reader is at the bottom, and stops at once when
// they move up to read (before the scroll itself is reported: a smooth scroll takes frames,
// and the next rendered frame would pull them back down); "Jump to latest" or scrolling back
// down resumes it.

import { ui } from "./dom.js";
import { t } from "./i18n.js";
import { copyText } from "./markdown.js";
import { announce } from "./notice.js";
import { addTurn, clearTurns, dropTurn, setStick, state } from "./state.js";

// The reader is "at the bottom" only there (2 px for fractional scrolling): a reader who
// scrolled up even a little is reading.
function atBottom() {
  return ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight <= 2;
}

function setFollowing(stick) {
  setStick(stick);
  ui.jump.hidden = stick;
}

/** The reader moves up: stop following at once. */
function unstick() {
  if (ui.log.scrollHeight <= ui.log.clientHeight) return;
  setFollowing(false);
}

function scrollToEnd() {
  ui.log.scrollTop = ui.log.scrollHeight;
}

/** Follow the answer again from its next paint (a new question, a new answer). */
export function stickToEnd({ scroll = false } = {}) {
  setStick(true);
  if (scroll) scrollToEnd();
}

/** Put the log back where the reader had it (after redrawing what is on screen). */
export function restoreScroll(top) {
  ui.log.scrollTop = top;
  setFollowing(atBottom());
}

/** The turns from `turn` on leave the log (an edit replaces them with its own branch). */
export function removeTurnsFrom(turn) {
  const index = state.turns.indexOf(turn);
  if (index < 0) return;
  for (const gone of state.turns.slice(index)) removeTurn(gone);
}

/** An answer was painted: keep it in sight if the reader is following. */
export function afterPaint() {
  if (state.stick) scrollToEnd();
  ui.jump.hidden = state.stick;
}

export function appendTurn(turn) {
  addTurn(turn);
  ui.messages.append(turn.el);
  ui.welcome.hidden = true;
}

export function removeTurn(turn) {
  dropTurn(turn);
  turn.el.remove();
  ui.welcome.hidden = state.turns.length > 0;
}

export function clearLog() {
  clearTurns();
  ui.messages.replaceChildren(ui.welcome);
  ui.welcome.hidden = false;
  setFollowing(true);
}

async function copyCode(button) {
  const code = button.closest(".code-block")?.querySelector("code, pre");
  const ok = await copyText(code ? code.textContent : "");
  announce(ok ? t("code.copiedSaid") : t("code.copyFailed"));
  if (!ok) return;
  button.classList.add("done");
  button.textContent = t("code.copied");
  setTimeout(() => {
    button.textContent = t("code.copy");
    button.classList.remove("done");
  }, 1500);
}

export function wireLog() {
  ui.jump.addEventListener("click", () => {
    setFollowing(true);
    scrollToEnd();
  });
  const follow = () => setFollowing(atBottom());
  ui.log.addEventListener("scroll", follow, { passive: true });
  ui.log.addEventListener("wheel", (event) => event.deltaY < 0 && unstick(), { passive: true });
  ui.log.addEventListener("touchmove", unstick, { passive: true });
  ui.log.addEventListener("touchend", follow);
  ui.log.addEventListener("keydown", (event) => {
    if (["ArrowUp", "PageUp", "Home"].includes(event.key)) unstick();
  });
  ui.log.addEventListener("pointerdown", (event) => event.target === ui.log && unstick());
  ui.messages.addEventListener("click", (event) => {
    const button = event.target.closest(".copy-code");
    if (button) copyCode(button);
  });
}
