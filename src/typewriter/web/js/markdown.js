// Answers as Markdown, safely, while they stream.
//
// marked turns Markdown into HTML and DOMPurify cleans that HTML before it reaches the page.
// Raw HTML written by the model is shown as text (escaped), never interpreted; DOMPurify then
// removes whatever could still run (javascript: links, handlers), and the page's
// Content-Security-Policy forbids inline script on top of that. Links open in a new tab with
// rel="noopener noreferrer".
//
// While an answer streams it is re-rendered at most once per animation frame, and only from
// the first top-level block (paragraph, list, code block…) that changed: the blocks above it
// keep their DOM nodes, so nothing above the growing end flickers, and the cost of a frame
// stays the size of the last block, not of the whole answer.

import { t } from "./i18n.js";

let lib = null; // { md, purify } once the libraries are loaded; null: show answers as text

function escapeHtml(text) {
  return text
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}

async function load() {
  const [{ Marked }, { default: DOMPurify }] = await Promise.all([
    import("../vendor/marked.js"),
    import("../vendor/dompurify.js"),
  ]);
  const md = new Marked({ gfm: true, breaks: true, async: false });
  md.use({
    renderer: {
      // HTML in the model's answer is text: "<b>" is shown as "<b>", whatever it is.
      html(token) {
        const text = escapeHtml(token.text);
        return token.block ? `<p class="raw-html">${text}</p>` : text;
      },
    },
  });
  const purify = DOMPurify(window);
  purify.addHook("afterSanitizeAttributes", (node) => {
    if (node.nodeName === "A" && node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer");
    }
    if (node.nodeName === "IMG") {
      node.setAttribute("loading", "lazy");
      node.setAttribute("referrerpolicy", "no-referrer");
    }
  });
  lib = { md, purify };
}

/** Resolves once Markdown rendering is available (or known not to be: answers are then text). */
export const markdownReady = load().catch((error) => {
  console.warn("typewriter: Markdown libraries unavailable, answers are shown as text", error);
});

/** Wrap each code block with a header holding its language and a "Copy code" button. */
function decorateCode(fragment) {
  for (const pre of fragment.querySelectorAll("pre")) {
    const code = pre.querySelector("code");
    const wrapper = document.createElement("div");
    wrapper.className = "code-block";
    const head = document.createElement("div");
    head.className = "code-head";
    const language = document.createElement("span");
    language.className = "code-lang";
    const match = code && /(?:^|\s)language-([\w+#.-]+)/.exec(code.className);
    language.textContent = match ? match[1] : t("code.language");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy-code";
    button.textContent = t("code.copy");
    head.append(language, button);
    pre.replaceWith(wrapper);
    wrapper.append(head, pre);
  }
}

function sanitize(html) {
  const fragment = lib.purify.sanitize(html, { RETURN_DOM_FRAGMENT: true });
  decorateCode(fragment);
  return fragment;
}

const LIST_MARKER_ALONE = /^[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]*$/;
const FENCE = /^[ \t]*(?:```|~~~)/gm;

/**
 * `text` without its last line when that line is only a list marker ("- ", "1. "): an item
 * begun and not written yet, which Markdown would show as an empty bullet. Inside an open
 * code block the line is code and stays.
 */
export function withoutDanglingMarker(text) {
  const start = text.lastIndexOf("\n") + 1;
  if (!LIST_MARKER_ALONE.test(text.slice(start))) return text;
  const before = text.slice(0, start);
  const fences = before.match(FENCE)?.length ?? 0;
  return fences % 2 === 0 ? before : text;
}

/** Markdown to a safe DocumentFragment, all at once (for text that is not streaming). */
export function renderMarkdown(text) {
  if (!lib) {
    const fragment = document.createDocumentFragment();
    fragment.append(text);
    return fragment;
  }
  return sanitize(lib.md.parse(text));
}

/** Renders a growing Markdown text into `container`, reusing the blocks that did not change. */
export class MarkdownView {
  constructor(container) {
    this.container = container;
    this.blocks = []; // { key, node } per top-level token shown
    this.linksKey = "";
  }

  render(text) {
    if (!lib) {
      this.container.classList.add("plain");
      this.container.textContent = text;
      return;
    }
    const tokens = lib.md.lexer(text);
    const links = tokens.links || {};
    const linksKey = JSON.stringify(links);
    if (linksKey !== this.linksKey) {
      // a reference definition arrived: blocks above may now link differently
      this.linksKey = linksKey;
      this.reset();
    }
    const items = tokens.filter((token) => token.type !== "space");
    let index = 0;
    for (const token of items) {
      const key = `${token.type}\u0000${token.raw}`;
      const block = this.blocks[index];
      if (!block || block.key !== key) {
        const list = [token];
        list.links = links;
        const fragment = sanitize(lib.md.parser(list));
        if (block) {
          block.node.replaceChildren(fragment);
          block.key = key;
        } else {
          const node = document.createElement("div");
          node.className = "md-block";
          node.append(fragment);
          this.container.append(node);
          this.blocks.push({ key, node });
        }
      }
      index += 1;
    }
    for (const stale of this.blocks.splice(index)) stale.node.remove();
  }

  reset() {
    this.blocks = [];
    this.container.replaceChildren();
    this.container.classList.remove("plain");
  }
}

/** Put `text` on the clipboard; falls back to a hidden textarea where the API is missing. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // fall through: some browsers refuse without a permission
    }
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.append(area);
  area.select();
  let done = false;
  try {
    done = document.execCommand("copy");
  } catch {
    done = false;
  }
  area.remove();
  return done;
}
