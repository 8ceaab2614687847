// The page's fixed elements (index.html), found once by id, and two builders for the elements
// the page makes as it goes. Every module reaches the page's elements through `ui` so an id is
// spelled in one place.

import { icon } from "./icons.js";

const $ = (id) => document.getElementById(id);

export const ui = {
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
  search: $("search"),
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
  attach: $("attach"),
  attachInput: $("attach-input"),
  pending: $("pending-images"),
  stop: $("stop"),
  status: $("status"),
  confirm: $("confirm"),
  confirmTitle: $("confirm-title"),
  confirmText: $("confirm-text"),
  confirmCancel: $("confirm-cancel"),
  confirmOk: $("confirm-ok"),
};

/** A new element; `text` is set as text, never parsed as HTML. */
export function h(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined && text !== null) element.textContent = text;
  return element;
}

/** A button with an icon and a label (or, `iconOnly`, the label as its accessible name). */
export function makeButton(label, iconName, { className = "", iconOnly = false, onClick } = {}) {
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
