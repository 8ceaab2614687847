// Answers as Markdown, safely, while they stream.
//
// marked turns Markdown into HTML and DOMPurify cleans that HTML before it reaches the page.
// Raw HTML written by the model is shown as text (escaped), never interpreted; DOMPurify then
// removes whatever could still run (javascript: links, handlers), and the page's
// Content-Security-Policy forbids inline script on top of that. Links open in a new tab with
// rel="noopener noreferrer".
//
// Code blocks in a language highlight.js knows are coloured (classes only: code.css holds the
// colours); others stay plain. Maths ($…$, \(…\), $$…$$, \[…\]) is typeset by KaTeX as MathML,
// which the browser lays out itself: no KaTeX CSS, fonts or inline styles (the CSP allows
// none), and KaTeX's untrusted mode, so \href, \includegraphics and \html… make nothing
// that links or runs. Both libraries' output goes through DOMPurify like the rest. Either may
// fail to load: code is then plain and maths stays as written.
//
// While an answer streams it is re-rendered at most once per animation frame, and only from
// the first top-level block (paragraph, list, code block…) that changed: the blocks above it
// keep their DOM nodes, so nothing above the growing end flickers, and the cost of a frame
// stays the size of the last block, not of the whole answer. The growing end itself is shown
// settled (settleGrowingEnd): no half-typed Markdown syntax flashes before it means anything.
//
// Where an answer was continued by another upstream, a marker shows the seam (seams.js): a
// sentinel character goes through the Markdown at each seam and becomes the marker once the
// HTML is sanitized. The highlighter and the maths typesetter set it aside while they work.

import { t } from "./i18n.js";
import { countIn, drawSeams, lift, placeSeams, plainWithSeams, plant, sentinelFor } from "./seams.js";

let lib = null; // { md, purify } once the libraries are loaded; null: show answers as text
let sentinel = null; // the seams' sentinel in the text being rendered (null: no seams)

function escapeHtml(text) {
  return text
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}

/** A library the page can do without: its module's default export, or null (and a warning). */
function optional(loading, what) {
  return loading.then(
    (module) => module.default,
    (error) => {
      console.warn(`typewriter: ${what} unavailable`, error);
      return null;
    },
  );
}

const HIGHLIGHT_LIMIT = 20_000; // characters of code; more is left plain (a long pause otherwise)

/**
 * Code in a language highlight.js knows, as highlighted HTML; false: marked's plain block.
 * A code block still being typed stays plain, and is coloured once its fence closes: colouring
 * it anew at every frame costs tens of milliseconds a frame once it is a few hundred lines
 * long (mostly sanitizing its many spans), and a frame has sixteen.
 */
function highlighter(hljs) {
  return (token) => {
    const language = /^\S*/.exec(token.lang || "")[0];
    if (token.growing || !language || !hljs.getLanguage(language)) return false;
    if (token.text.length > HIGHLIGHT_LIMIT) return false;
    // a seam in the code: coloured without it, then put back where it was
    const { bare, offsets } = lift(token.text.replace(/\n$/, ""), sentinel);
    const html = plant(hljs.highlight(bare, { language, ignoreIllegals: true }).value, sentinel, offsets);
    return `<pre><code class="hljs language-${escapeHtml(language)}">${html}\n</code></pre>\n`;
  };
}

// Inline maths: [pattern, display]. A lone "$" opens only before a non-space and closes only
// after one, never before a digit, and holds no prose: prices ("$5 and $10") stay text.
const INLINE_MATHS = [
  [/^\$\$(?!\$)((?:\\[^]|[^\\$])+?)\$\$/, true],
  [/^\\\[([^]+?)\\\]/, true],
  [/^\\\(([^]+?)\\\)/, false],
  [/^\$(?![\s$])((?:\\[^]|[^\\$\n`])+?)(?<!\s)\$(?!\d)/, false],
];
const DOLLAR = INLINE_MATHS[3][0];
// Between two "$", a word outside braces is prose ("$5 and $10"), not maths ("\text{and}" is).
const PROSE_WORD = /\s[A-Za-z]{3,}[\s,.;:!?]/;
const BRACES = /\{[^{}]*\}/g;

function prose(tex) {
  let bare = tex;
  for (let before = ""; before !== bare; ) [before, bare] = [bare, bare.replace(BRACES, "")];
  return PROSE_WORD.test(bare);
}
const BLOCK_MATHS = /^ {0,3}(?:\$\$((?:\\[^]|[^\\$])+?)\$\$|\\\[([^]+?)\\\])[ \t]*(?:\n|$)/;

/** The marked extensions that typeset maths with KaTeX (MathML only, untrusted). */
function maths(katex) {
  // a seam inside a formula is marked after it: TeX has no place for it
  const typeset = (token) => {
    if (!sentinel || !token.raw.includes(sentinel)) return typesetTex(token);
    const bare = { tex: token.tex.replaceAll(sentinel, ""), raw: token.raw.replaceAll(sentinel, "") };
    return typesetTex({ ...token, ...bare }) + sentinel.repeat(countIn(token.raw, sentinel));
  };
  const typesetTex = (token) => {
    try {
      return katex.renderToString(token.tex, {
        output: "mathml",
        displayMode: token.display,
        throwOnError: true,
        trust: false,
        strict: "ignore",
        maxSize: 20, // em: no \rule or \kern as wide as a wall
      });
    } catch {
      return `<code class="maths-error">${escapeHtml(token.raw.trim())}</code>`;
    }
  };
  return [
    {
      name: "mathsBlock",
      level: "block",
      start: (src) => /^ {0,3}(?:\$\$|\\\[)/m.exec(src)?.index,
      tokenizer(src) {
        const match = BLOCK_MATHS.exec(src);
        if (!match) return undefined;
        return { type: "mathsBlock", raw: match[0], tex: match[1] ?? match[2], display: true };
      },
      renderer: (token) => `<div class="maths">${typeset(token)}</div>\n`,
    },
    {
      name: "maths",
      level: "inline",
      start: (src) => /\$|\\[[(]/.exec(src)?.index,
      tokenizer(src) {
        for (const [pattern, display] of INLINE_MATHS) {
          const match = pattern.exec(src);
          if (match && !(pattern === DOLLAR && prose(match[1]))) {
            return { type: "maths", raw: match[0], tex: match[1], display };
          }
        }
        return undefined;
      },
      renderer: typeset,
    },
  ];
}

async function load() {
  const highlighting = optional(import("../vendor/highlight.js"), "code highlighting");
  const typesetting = optional(import("../vendor/katex.js"), "maths typesetting");
  const [{ Marked }, { default: DOMPurify }] = await Promise.all([
    import("../vendor/marked.js"),
    import("../vendor/dompurify.js"),
  ]);
  const [hljs, katex] = await Promise.all([highlighting, typesetting]);
  const md = new Marked({ gfm: true, breaks: true, async: false });
  md.use({
    renderer: {
      // HTML in the model's answer is text: "<b>" is shown as "<b>", whatever it is.
      html(token) {
        const text = escapeHtml(token.text);
        return token.block ? `<p class="raw-html">${text}</p>` : text;
      },
      ...(hljs ? { code: highlighter(hljs) } : {}),
    },
  });
  if (katex) md.use({ extensions: maths(katex) });
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

// KaTeX's MathML keeps the TeX in <semantics><annotation> (not shown, but read by assistive
// tools); DOMPurify leaves both out by default and would show the TeX as text. No style
// attribute ever: the CSP refuses inline styles, and Markdown needs none.
const PURIFY = {
  RETURN_DOM_FRAGMENT: true,
  ADD_TAGS: ["semantics", "annotation"],
  FORBID_ATTR: ["style"],
};

function sanitize(html) {
  const fragment = lib.purify.sanitize(html, PURIFY);
  decorateCode(fragment);
  return fragment;
}

const CLOSED_FENCE = /\n {0,3}(?:`{3,}|~{3,})[ \t]*\n*$/;
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

// The growing end of an answer being typed, settled: what would flash as raw syntax and then
// jump into shape is held back (or closed) until the model writes the rest. Only the growing
// end of a live answer goes through this; a finished answer is rendered as written.
const FENCE_LINE = /^ {0,3}(`{3,}|~{3,})(.*)$/;
const MARKER_ALONE = /^[ \t]*(?:[-*+]|\d{1,9}[.)]|#{1,6}|>)[ \t]*$/;
const TABLE_ROW = /^ {0,3}\|/;
const DELIMITER_START = /^ {0,3}\|?[ \t:|-]*$/;
const DELIMITER_CELL = /^[ \t]*:?-+:?[ \t]*$/;
const INLINE_MATHS_LIMIT = 200; // an unclosed "$" further back than this was not maths
const PROSE_WORD_AT = new RegExp(PROSE_WORD.source, "y");

/** Where the last block's text starts (after the last blank line or code fence), and whether
 * the text ends inside a fenced code block, on its opening line or in its code. */
function lastBlock(text) {
  let start = 0;
  let fence = null; // { marker, line }: the open fence
  let at = 0;
  const lines = text.split("\n");
  for (const [index, line] of lines.entries()) {
    const next = at + line.length + 1;
    const match = FENCE_LINE.exec(line);
    if (fence) {
      const closing = match && match[1][0] === fence.marker[0];
      if (closing && match[1].length >= fence.marker.length && !match[2].trim()) {
        fence = null;
        start = next;
      }
    } else if (match && !(match[1][0] === "`" && match[2].includes("`"))) {
      fence = { marker: match[1], line: at };
    } else if (!line.trim() && index < lines.length - 1) {
      start = next; // a blank line ends the block above (the last line is only begun)
    }
    at = next;
  }
  const lastLine = text.lastIndexOf("\n") + 1;
  return { start: Math.min(start, text.length), fence, lastLine };
}

function cells(row) {
  return row.trim().replace(/^\|/, "").replace(/(?<!\\)\|$/, "").split(/(?<!\\)\|/);
}

/** `block` without a table's first lines while its delimiter row is not whole yet: pipes
 * that are about to become a table are not shown as text first. */
function withoutHalfTable(block) {
  const lines = block.split("\n");
  const last = lines.length - 1;
  // a table above line `k`, up to it: its rows are typed in place, cell by cell
  const tableUpTo = (k) => lines.some((line, i) => i < k && isDelimiter(lines[i + 1], line));
  if (last >= 1 && TABLE_ROW.test(lines[last - 1]) && DELIMITER_START.test(lines[last])) {
    // a delimiter row begun under a header row (or a new row begun under a table's row)
    return tableUpTo(last) ? block : lines.slice(0, last - 1).join("\n");
  }
  if (TABLE_ROW.test(lines[last])) {
    return tableUpTo(last - 1) ? block : lines.slice(0, last).join("\n");
  }
  return block;
}

function isDelimiter(line, header) {
  if (!DELIMITER_START.test(line) || !line.includes("-") || !TABLE_ROW.test(header)) return false;
  const parts = cells(line);
  return parts.every((cell) => DELIMITER_CELL.test(cell)) && parts.length === cells(header).length;
}

function runOf(text, at, char) {
  let end = at;
  while (text[end] === char) end += 1;
  return end - at;
}

const SPACE = /\s/;
const OPENS_AFTER = /[\s([{"'>~-]/; // what emphasis follows here ("2*3" is no emphasis)

/** The inline syntax left open at the end of `block`: code spans are closed, emphasis is
 * closed, maths not closed yet is held back (half a formula cannot be typeset). */
function settleInline(block) {
  let code = null; // { at, ticks }
  let maths = null; // { at, close, depth }: depth of braces, for "$"
  const emphasis = []; // { at, marker } open "*" and "**", innermost last
  let i = 0;
  while (i < block.length) {
    const c = block[i];
    if (code) {
      const run = c === "`" ? runOf(block, i, "`") : 1;
      if (c === "`" && run === code.ticks) code = null;
      i += run;
    } else if (maths) {
      const inline = maths.close === "$" || maths.close === "\\)";
      if (c === "{") maths.depth += 1;
      if (c === "}") maths.depth -= 1;
      const dollar = maths.close === "$";
      PROSE_WORD_AT.lastIndex = i;
      const prose = dollar && maths.depth === 0 && PROSE_WORD_AT.test(block);
      const far = i - maths.at > INLINE_MATHS_LIMIT;
      if (inline && (c === "\n" || (dollar && c === "`") || prose || far)) {
        i = maths.at + 1; // not maths after all: read on after its "$"
        maths = null;
      } else if (block.startsWith(maths.close, i) && !(dollar && SPACE.test(block[i - 1]))) {
        i += maths.close.length;
        maths = null;
      } else {
        i += c === "\\" ? 2 : 1;
      }
    } else if (c === "\\") {
      const next = block[i + 1];
      if (next === "(" || next === "[") {
        maths = { at: i, close: next === "(" ? "\\)" : "\\]", depth: 0 };
      }
      if (next === undefined) return settleInline(block.slice(0, i)); // perhaps "\(" to come
      i += 2;
    } else if (c === "`") {
      code = { at: i, ticks: runOf(block, i, "`") };
      i += code.ticks;
    } else if (c === "$") {
      const double = block[i + 1] === "$";
      if (double || i + 1 === block.length || !SPACE.test(block[i + 1])) {
        maths = { at: i, close: double ? "$$" : "$", depth: 0 };
      }
      i += double ? 2 : 1;
    } else if (c === "*") {
      const run = runOf(block, i, "*");
      const before = i === 0 || OPENS_AFTER.test(block[i - 1]);
      const after = i + run === block.length || SPACE.test(block[i + run]);
      const markers = run >= 3 ? ["**", "*"] : [c.repeat(Math.min(run, 2))];
      for (const marker of markers) {
        const open = emphasis.findLastIndex((e) => e.marker === marker);
        if (open >= 0 && !SPACE.test(block[i - 1])) emphasis.splice(open);
        else if (before && (!after || i + run === block.length)) emphasis.push({ at: i, marker });
      }
      i += run;
    } else {
      i += 1;
    }
  }
  if (maths) return settleInline(block.slice(0, maths.at));
  let end = block;
  if (code) {
    const content = block.slice(code.at + code.ticks).replace(/`+$/, "");
    const ticks = "`".repeat(code.ticks);
    end = block.slice(0, code.at);
    if (content.trim()) end += ticks + content + ticks;
  }
  while (emphasis.length) {
    const { at, marker } = emphasis.pop();
    if (at >= end.length) continue;
    const content = end.slice(at + marker.length).replace(/[*\s]+$/, "");
    end = content ? end.slice(0, at + marker.length) + content + marker : end.slice(0, at);
  }
  return end;
}

/**
 * `text`, the answer typed so far, as it should show while the rest is still coming: an
 * opening code fence waits for its line's end (its language is not known before), a table
 * waits for its delimiter row, a formula for its closing delimiter, a lone marker ("- ", "#",
 * ">", "`", "*", "$") for its text; an open code span or bold is shown closed. Inside an open
 * code block everything is code and stays.
 */
export function settleGrowingEnd(text) {
  const { start, fence, lastLine } = lastBlock(text);
  if (fence) {
    if (fence.line === lastLine) return text.slice(0, fence.line);
    // a closing fence half typed ("``") is not a line of code
    const closing = /^ {0,3}(`+|~+)$/.exec(text.slice(lastLine));
    return closing && closing[1][0] === fence.marker[0] ? text.slice(0, lastLine - 1) : text;
  }
  if (MARKER_ALONE.test(text.slice(lastLine))) return settleGrowingEnd(text.slice(0, lastLine));
  const block = withoutHalfTable(text.slice(start));
  return text.slice(0, start) + settleInline(block);
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

  /**
   * Show `text`; `growing`: more is still coming, so its end is shown settled. `seams`
   * (`{at, label}`, `at` an offset into `text`) are marked where they fit (seams.js).
   */
  render(text, { growing = false, seams = [] } = {}) {
    if (!lib) {
      this.container.classList.add("plain");
      this.container.replaceChildren(plainWithSeams(text, seams));
      return;
    }
    sentinel = seams.length ? sentinelFor(text) : null;
    const source = growing ? settleGrowingEnd(text) : text;
    const { text: marked, labels } = placeSeams(source, seams, sentinel);
    try {
      this.renderMarked(marked, labels, growing);
    } finally {
      sentinel = null;
    }
  }

  renderMarked(source, labels, growing) {
    const tokens = lib.md.lexer(source);
    const links = tokens.links || {};
    const linksKey = JSON.stringify(links);
    if (linksKey !== this.linksKey) {
      // a reference definition arrived: blocks above may now link differently
      this.linksKey = linksKey;
      this.reset();
    }
    const items = tokens.filter((token) => token.type !== "space");
    const last = items[items.length - 1];
    if (growing && last?.type === "code" && !CLOSED_FENCE.test(last.raw)) last.growing = true;
    let index = 0;
    let seen = 0; // the seams marked in the blocks above
    for (const token of items) {
      const count = countIn(token.raw, sentinel);
      const mine = labels.slice(seen, seen + count);
      seen += count;
      const marks = count ? `${mine.join("\u0001")}\u0000` : "";
      const key = `${token.type}\u0000${token.growing ? "growing\u0000" : ""}${marks}${token.raw}`;
      const block = this.blocks[index];
      if (!block || block.key !== key) {
        const list = [token];
        list.links = links;
        const fragment = sanitize(lib.md.parser(list));
        drawSeams(fragment, sentinel, mine);
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
