// The conversation list in the sidebar, newest first, 20 at a time ("Load more").
//
// The list is reloaded after each question and when the tab comes back into view. A newer
// load makes an older one stale: it aborts the older one's fetch. The list is drawn from the
// state when it changes (renderList is a listener of onChange), and the open conversation is
// marked in it.

import { api } from "./api.js";
import { openConversation } from "./conversation.js";
import { h, ui } from "./dom.js";
import { showError } from "./notice.js";
import { retitle, setList, state } from "./state.js";
import { setSidebar } from "./sidebar.js";

let loading = new AbortController(); // the load under way, if any

/** Reload the list (as many as are shown, 20 to 100), or with `more`, add the next page. */
export async function loadList({ more = false } = {}) {
  loading.abort();
  loading = new AbortController();
  const { signal } = loading;
  const params = new URLSearchParams();
  const loaded = state.list.items.length;
  params.set("limit", String(more ? 20 : Math.min(100, Math.max(20, loaded))));
  if (more && state.list.cursor) params.set("cursor", state.list.cursor);
  let page;
  try {
    page = await api(`/v1/conversations?${params}`, { signal });
  } catch (error) {
    if (!signal.aborted && more) showError(error, () => loadList({ more: true }));
    return;
  }
  if (signal.aborted) return;
  setList(more ? [...state.list.items, ...page.data] : page.data, page.next_cursor);
  const open = state.conversation && state.list.items.find((c) => c.id === state.conversation.id);
  if (open && !state.renaming) retitle(open.id, open.title);
}

/** Take a deleted conversation off the list at once (the next load confirms it). */
export function forget(id) {
  setList(
    state.list.items.filter((c) => c.id !== id),
    state.list.cursor,
  );
}

let drawn = null; // the list as last drawn

/** Draw the list if it changed, and mark the open conversation (a listener of onChange). */
export function renderList() {
  if (state.list !== drawn) {
    drawn = state.list;
    const focused = document.activeElement;
    const focusedId = ui.list.contains(focused) ? focused.dataset.id : null;
    const items = drawn.items.map((conversation) => {
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
    ui.loadMore.hidden = !drawn.cursor;
    if (focusedId) ui.list.querySelector(`a[data-id="${focusedId}"]`)?.focus();
  }
  const openId = state.conversation?.id;
  for (const link of ui.list.querySelectorAll("a")) {
    if (link.dataset.id === openId) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

export function wireList() {
  ui.loadMore.addEventListener("click", () => loadList({ more: true }));
  ui.list.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-id]");
    if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    if (event.altKey) return;
    event.preventDefault();
    if (state.conversation && state.conversation.id === link.dataset.id) setSidebar(false);
    else openConversation(link.dataset.id, { push: true });
  });
}
