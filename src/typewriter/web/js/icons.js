// Small stroke icons drawn inline (no icon font, no emoji font needed): 24×24, currentColor.
// Each is decoration only (aria-hidden); the button that holds it carries the name.

const PATHS = {
  plus: '<path d="M12 5v14M5 12h14"/>',
  menu: '<path d="M4 6h16M4 12h16M4 18h16"/>',
  close: '<path d="M6 6l12 12M18 6L6 18"/>',
  send: '<path d="M12 19V5M6 11l6-6 6 6"/>',
  stop: '<rect x="6.5" y="6.5" width="11" height="11" rx="2" fill="currentColor"/>',
  copy: '<rect x="9" y="9" width="11" height="11" rx="2"/><path d="M15 9V6a2 2 0 0 0-2-2H6a2 2 0 0 0-2 2v7a2 2 0 0 0 2 2h3"/>',
  check: '<path d="M5 12.5l4.5 4.5L19 7.5"/>',
  regenerate: '<path d="M20 12a8 8 0 0 1-14.3 4.9M4 12a8 8 0 0 1 14.3-4.9"/><path d="M18.5 3v4.2h-4.2M5.5 21v-4.2h4.2"/>',
  "thumb-up": '<path d="M7 11v9H4.5a.5.5 0 0 1-.5-.5v-8a.5.5 0 0 1 .5-.5z"/><path d="M7 11l3.6-6.6A1.7 1.7 0 0 1 13.8 5l-.8 4.6h5.3a2 2 0 0 1 2 2.4l-1.3 6.4a2 2 0 0 1-2 1.6H7"/>',
  "thumb-down": '<g transform="rotate(180 12 12)"><path d="M7 11v9H4.5a.5.5 0 0 1-.5-.5v-8a.5.5 0 0 1 .5-.5z"/><path d="M7 11l3.6-6.6A1.7 1.7 0 0 1 13.8 5l-.8 4.6h5.3a2 2 0 0 1 2 2.4l-1.3 6.4a2 2 0 0 1-2 1.6H7"/></g>',
  pencil: '<path d="M4 20h4.5L19.3 9.2a2 2 0 0 0 0-2.8l-1.7-1.7a2 2 0 0 0-2.8 0L4 15.5z"/><path d="M13.5 6l4.5 4.5"/>',
  eraser: '<path d="M8.5 19.5L3.9 14.9a1.5 1.5 0 0 1 0-2.1l8.8-8.8a1.5 1.5 0 0 1 2.1 0l5.3 5.3a1.5 1.5 0 0 1 0 2.1L12 19.5z"/><path d="M8.5 19.5H20M9 8.5l6.5 6.5"/>',
  trash: '<path d="M4 7h16M10 11v6M14 11v6M6 7l1 12.2A2 2 0 0 0 9 21h6a2 2 0 0 0 2-1.8L18 7M9 7V4.5a.5.5 0 0 1 .5-.5h5a.5.5 0 0 1 .5.5V7"/>',
  "chevron-left": '<path d="M15 5l-7 7 7 7"/>',
  "chevron-right": '<path d="M9 5l7 7-7 7"/>',
  "arrow-down": '<path d="M12 5v14M6 13l6 6 6-6"/>',
  download: '<path d="M12 4v11M7 10.5l5 5 5-5M5 20h14"/>',
  image: '<rect x="3.5" y="4.5" width="17" height="15" rx="2"/><circle cx="9" cy="9.5" r="1.6"/><path d="M20.5 15.5l-4.5-4.5-9 8.5"/>',
  alert: '<path d="M12 8v5M12 16.5v.01"/><path d="M10.3 4.2L2.8 17.5A2 2 0 0 0 4.5 20.5h15a2 2 0 0 0 1.7-3L13.7 4.2a2 2 0 0 0-3.4 0z"/>',
};

/** An <svg> element for the icon `name`, hidden from assistive technology. */
export function icon(name) {
  const template = document.createElement("template");
  template.innerHTML =
    '<svg class="icon" viewBox="0 0 24 24" width="18" height="18" fill="none" ' +
    'stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round" ' +
    `aria-hidden="true" focusable="false">${PATHS[name] ?? ""}</svg>`;
  return template.content.firstElementChild;
}

/** Put the icon named by `data-icon` in front of each such element's text. */
export function decorate(root = document) {
  for (const element of root.querySelectorAll("[data-icon]")) {
    if (element.querySelector(":scope > svg.icon")) continue;
    const text = element.textContent.trim();
    element.textContent = "";
    element.append(icon(element.dataset.icon));
    if (text) {
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = text;
      element.append(label);
    }
  }
}
