// The open conversation's header and what it offers: its title (also the tab's), renaming it
// in place, and clearing its history or deleting it, each confirmed in a dialog first.
//
// A rename under way belongs to the view it started in: opening another view aborts that
// view's signal, which closes the rename form.

import { api } from "./api.js";
import { startNewChat } from "./conversation.js";
import { ui } from "./dom.js";
import { dropLive } from "./following.js";
import { t } from "./i18n.js";
import { forget, loadList } from "./list.js";
import { clearLog } from "./log.js";
import { announce, showError } from "./notice.js";
import { retitle, setLoaded, setRenaming, state, viewSignal } from "./state.js";

/** The title, and the actions shown or not, from the state (a listener of onChange). */
export function refreshHeader() {
  const conversation = state.conversation;
  const title = conversation ? conversation.title : t("chat.new");
  ui.title.textContent = title;
  ui.actions.hidden = !conversation || state.renaming;
  document.title = conversation ? `${title} · typewriter` : "typewriter";
}

function startRename() {
  if (!state.conversation) return;
  setRenaming(true);
  viewSignal().addEventListener("abort", () => endRename(), { once: true });
  ui.renameInput.value = state.conversation.title;
  ui.title.hidden = true;
  ui.renameForm.hidden = false;
  ui.actions.hidden = true;
  ui.renameInput.focus();
  ui.renameInput.select();
}

function endRename({ focus = false } = {}) {
  if (!state.renaming) return;
  setRenaming(false);
  ui.renameForm.hidden = true;
  ui.title.hidden = false;
  ui.actions.hidden = !state.conversation; // now, so that it can take the focus
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
    retitle(conversation.id, renamed.title);
  } catch (error) {
    showError(error, saveRename);
    return;
  }
  endRename({ focus: true });
  announce(t("header.renamed"));
  loadList();
}

/** Ask in the modal dialog; true when the reader confirmed, else the focus goes `back`. */
async function confirmed({ title, text, ok, back }) {
  const sure = await new Promise((resolve) => {
    ui.confirmTitle.textContent = title;
    ui.confirmText.textContent = text;
    ui.confirmOk.textContent = ok;
    ui.confirm.returnValue = "";
    ui.confirm.addEventListener("close", () => resolve(ui.confirm.returnValue === "ok"), {
      once: true,
    });
    ui.confirm.showModal();
    ui.confirmCancel.focus();
  });
  if (!sure) back.focus();
  return sure;
}

async function deleteConversation() {
  const conversation = state.conversation;
  if (!conversation) return;
  const sure = await confirmed({
    title: t("header.deleteTitle"),
    text: t("header.deleteText", { title: conversation.title }),
    ok: t("header.deleteOk"),
    back: ui.remove,
  });
  if (!sure) return;
  try {
    await dropLive(conversation.id);
    await api(`/v1/conversations/${encodeURIComponent(conversation.id)}`, { method: "DELETE" });
  } catch (error) {
    showError(error, deleteConversation);
    return;
  }
  forget(conversation.id);
  startNewChat({ url: "replace", focus: true });
  announce(t("header.deleted"));
  loadList();
}

async function clearHistory() {
  const conversation = state.conversation;
  if (!conversation) return;
  const view = viewSignal();
  const sure = await confirmed({
    title: t("header.clearTitle"),
    text: t("header.clearText"),
    ok: t("header.clear"),
    back: ui.clear,
  });
  if (!sure) return;
  try {
    await dropLive(conversation.id);
    await api(`/v1/conversations/${encodeURIComponent(conversation.id)}/messages`, {
      method: "DELETE",
    });
  } catch (error) {
    showError(error, clearHistory);
    return;
  }
  if (view.aborted) return; // another view is open now: it has nothing to clear
  clearLog();
  setLoaded("");
  ui.message.focus();
  announce(t("header.cleared"));
}

export function wireHeader() {
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
}
