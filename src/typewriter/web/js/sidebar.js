// The sidebar on small screens: a modal panel over the chat, opened by the menu button and
// closed by its close button, the scrim, Escape or opening a conversation. On wide screens it
// is always shown and none of this applies.

import { ui } from "./dom.js";

const narrow = window.matchMedia("(max-width: 760px)");

function sidebarOpen() {
  return ui.app.classList.contains("sidebar-open");
}

export function setSidebar(open) {
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

function closeToToggle() {
  setSidebar(false);
  ui.toggle.focus();
}

export function wireSidebar() {
  ui.toggle.addEventListener("click", () => setSidebar(!sidebarOpen()));
  ui.close.addEventListener("click", closeToToggle);
  ui.scrim.addEventListener("click", closeToToggle);
  ui.sidebar.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && sidebarOpen()) closeToToggle();
  });
  narrow.addEventListener("change", () => setSidebar(false));
}
