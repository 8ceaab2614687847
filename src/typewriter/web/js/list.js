// The conversation list in the sidebar, newest first, 20 at a time ("Load more"), under date
// headings (dates.js); while the search box holds a query (search.js), the server's results.
//
// The list is reloaded after each question and when the tab comes back into view. A newer
// load makes an older one stale: it aborts the older one's fetch. The list is drawn from the
// state when it changes (renderList is a listener of onChange), and the open conversation is
// marked in it and scrolled into view when it is opened (once: a reload of the list does not
// take the reader's scrolling away). An open conversation older than the first page is
// looked for in the next pages, a few at most.

import { api } from "./api.js";
import { openConversation } from "./conversation.js";
import { groupByDate } from "./dates.js";
import { wireExport } from "./export.js";
import { h, ui } from "./dom.js";
import { t } from "./i18n.js";
import { showError } from "./notice.js";
import { retitle, setList, state } from "./state.js";
import { setSidebar } from "./sidebar.js";

const LOOK_FOR_OPEN = 200; // conversations loaded at most to find the open one in the list
const EMPTY = t("list.empty");

let loading = new AbortController(); // the load under way, if any
let query = ""; // the search box's text when the last search started: "" lists them all

/** Search for `text` from now on ("": the whole list); the caller loads the list. */
export function searchFor(text) {
  if (!text && query) scrolledTo = null; // the whole list again: show the open one in it
  query = text;
}

/** Reload the list (as many as are shown, 20 to 100), or with `more`, add the next page. */
export async function loadList({ more = false } = {}) {
  loading.abort();
  loading = new AbortController();
  const { signal } = loading;
  const params = new URLSearchParams();
  const loaded = state.list.items.length;
  params.set("limit", String(more ? 20 : Math.min(100, Math.max(20, loaded))));
  if (more && state.list.cursor) params.set("cursor", state.list.cursor);
  if (query) params.set("q", query);
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
  if (state.conversation && !open && !query && page.next_cursor) {
    if (state.list.items.length < LOOK_FOR_OPEN) loadList({ more: true });
  }
}

/** Take a deleted conversation off the list at once (the next load confirms it). */
export function forget(id) {
  setList(
    state.list.items.filter((c) => c.id !== id),
    state.list.cursor,
  );
}

function linkTo(conversation) {
  const item = h("li");
  const link = h("a", "conversation", conversation.title);
  link.href = `/?c=${encodeURIComponent(conversation.id)}`;
  link.dataset.id = conversation.id;
  link.title = conversation.title;
  if (conversation.snippet) {
    // a search result found in its messages: the words around the match, under the title
    link.replaceChildren(h("span", "conversation-title", conversation.title));
    link.append(h("span", "snippet", conversation.snippet));
  }
  item.append(link);
  return item;
}

/** One date group: its heading, then its conversations as a list of their own. */
function groupItem({ label, items }, index) {
  const group = h("li", "list-group");
  const heading = h("h2", "list-heading", label);
  heading.id = `list-group-${index}`;
  const list = h("ul");
  list.setAttribute("aria-labelledby", heading.id);
  list.append(...items.map(linkTo));
  group.append(heading, list);
  return group;
}

let drawn = null; // the list as last drawn
let scrolledTo = null; // the open conversation the list was last scrolled to

/** Draw the list if it changed, and mark the open conversation (a listener of onChange). */
export function renderList() {
  if (state.list !== drawn) {
    drawn = state.list;
    const focused = document.activeElement;
    const focusedId = ui.list.contains(focused) ? focused.dataset.id : null;
    const groups = groupByDate(drawn.items).map(groupItem);
    ui.list.replaceChildren(...groups);
    ui.noConversations.textContent = query ? t("list.none", { query }) : EMPTY;
    ui.noConversations.hidden = drawn.items.length > 0;
    ui.loadMore.hidden = !drawn.cursor;
    if (focusedId) ui.list.querySelector(`a[data-id="${focusedId}"]`)?.focus();
  }
  const openId = state.conversation?.id;
  let openLink = null;
  for (const link of ui.list.querySelectorAll("a")) {
    if (link.dataset.id === openId) {
      link.setAttribute("aria-current", "page");
      openLink = link;
    } else link.removeAttribute("aria-current");
  }
  if (openLink && scrolledTo !== openId) {
    scrolledTo = openId;
    openLink.scrollIntoView({ block: "nearest" });
  } else if (!openId) scrolledTo = null;
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
  wireExport(); // the open conversation's Export action (header)
}
