// The seams of an answer: where the upstream writing it failed and the next one of its
// assistant's chain continued it (the stream's `notice` event, a stored answer's `sources`).
// Each is shown as a small marker in the text, labelled with who continued.
//
// The answer is Markdown, and what a reader sees is not the text written, so a marker cannot
// be placed in the rendered DOM by counting characters. Instead a sentinel, a rare
// punctuation mark that the answer does not hold, is put into the Markdown at each seam; it
// goes through marked and DOMPurify as any text does, and is then replaced by the marker.
// Being punctuation, it leaves emphasis around it as it was ("_word_" stays emphasis with
// the sentinel on either side). It is put only where it cannot change the Markdown's
// structure: never on a line that is structure only (a code fence, a rule, a table's
// delimiter row, a link definition), never among a line's block markers ("- ", "1. ", "> ",
// "# ", a table's first "|"), never inside a word of prose (a word may be a link or a URL),
// but anywhere in a code block's code, which the highlighter takes it out of and puts back
// (lift, plant). A seam anywhere else moves to the nearest such place.
//
// The marker is an empty element with a label: it holds no text, so selecting and copying
// the answer, or its code, never takes it along.

// Rare punctuation marks (Unicode Po), the first one absent from the answer is its sentinel.
const CANDIDATES = [
  "\u2e0e",
  "\u2e0f",
  "\u2e10",
  "\u2e11",
  "\u2e13",
  "\u2e14",
  "\u2e15",
  "\u2e16",
  "\u2e19",
  "\u2e2c",
  "\u2e2d",
  "\u2e30",
];

const BLOCK_PREFIX =
  /^(?:[ \t]*(?:>|[-*+](?=[ \t]|$)|\d{1,9}[.)](?=[ \t]|$)|#{1,6}(?=[ \t]|$)|\[[ xX]\](?=[ \t])|\|))*[ \t]*/;
const FENCE_AT = /^(`{3,}|~{3,})(.*)$/;
const STRUCTURE = [
  /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/, // a thematic break
  /^ {0,3}(?:=+|-+)[ \t]*$/, // a heading's underline
  /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/, // a table's delimiter row
  /^ {0,3}\[[^\]]+\]:/, // a link reference definition
];
const SPACE = /\s/;
const FORMULA_EDGE = /^(?:\$\$|\\\[)|(?:\$\$|\\\])$/; // a line that opens or closes $$…$$, \[…\]
// A word that Markdown may make a link of (GFM links bare addresses), which would take the
// sentinel in: not marked at its start or end.
const LINKY = /:\/\/|www\.|@/;
const CODE = "code"; // a line of a fenced code block's code
const TEXT = "text"; // a line of prose (paragraph, item, heading, table row…)
const NONE = "none"; // a blank line, a fence, a line of structure only
const LINES_AROUND = 100; // how far a seam may move to find its place

/** The sentinel for `text`: a candidate it does not hold (null: none left, no markers). */
export function sentinelFor(text) {
  return CANDIDATES.find((candidate) => !text.includes(candidate)) ?? null;
}

/** The lines of `source` and what each one is: code, prose (its text from `from` to `to`), or
 * neither. Fences are followed as settleGrowingEnd follows them, inside containers too. */
function linesOf(source) {
  const lines = [];
  let fence = null; // the open fence's marker
  let contained = false; // the open fence is in a list item or a quote (or indented)
  let start = 0;
  for (const line of source.split("\n")) {
    const end = start + line.length;
    const prefix = BLOCK_PREFIX.exec(line)[0].length;
    const match = FENCE_AT.exec(line.slice(prefix));
    let kind = TEXT;
    if (fence) {
      const closing = match && match[1][0] === fence[0] && match[1].length >= fence.length;
      if (closing && !match[2].trim()) {
        kind = NONE;
        fence = null;
      } else {
        kind = CODE;
      }
    } else if (match && !(match[1][0] === "`" && match[2].includes("`"))) {
      kind = NONE;
      fence = match[1];
      contained = prefix > 0;
    } else if (!line.trim() || STRUCTURE.some((pattern) => pattern.test(line))) {
      kind = NONE;
    }
    const to = start + line.trimEnd().length;
    lines.push({ start, end, from: start + prefix, to, kind, contained });
    start = end + 1;
  }
  return lines;
}

/** True where the sentinel changes nothing of the Markdown (see the module's comment): in
 * prose, at a word's start or end, never against a table's "|" (a cell's text is trimmed). */
function fits(source, line, q) {
  // in code anywhere, but after its container's markers ("> ", a list item's indentation),
  // which an empty line of code in a container does not show
  if (line.kind === CODE) {
    return (line.end > line.start || !line.contained) && q >= line.from && q <= line.end;
  }
  if (line.kind !== TEXT || q < line.from || q > line.to || line.to <= line.from) return false;
  const before = source[q - 1];
  const after = source[q];
  if (before === "\\") return false; // it would be escaped, or undo a hard line break
  if ((q === line.from || q === line.to) && FORMULA_EDGE.test(source.slice(line.from, line.to))) {
    return false; // a formula's block keeps its line to itself
  }
  const start = (q === line.from || SPACE.test(before)) && !SPACE.test(after) && after !== "|";
  const end = !SPACE.test(before) && before !== "|" && (q === line.to || SPACE.test(after));
  return (start && !LINKY.test(wordAt(source, q, 1))) || (end && !LINKY.test(wordAt(source, q, -1)));
}

/** The word (run of non-space) that starts (`step` 1) or ends (-1) at `q`. */
function wordAt(source, q, step) {
  let i = step > 0 ? q : q - 1;
  while (i >= 0 && i < source.length && !SPACE.test(source[i])) i += step;
  return step > 0 ? source.slice(q, i) : source.slice(i + 1, q);
}

/** The place nearest to `p` on line `index` where a marker fits (null: none). */
function nearestOnLine(source, lines, index, p) {
  const line = lines[index];
  const reach = Math.max(p - line.start, line.end - p);
  for (let d = 0; d <= reach; d += 1) {
    if (p - d >= line.start && fits(source, line, p - d)) return p - d;
    if (p + d <= line.end && fits(source, line, p + d)) return p + d;
  }
  return null;
}

/** Where the seam at `p` is marked: the nearest place that fits, on its line or on a line
 * around it (null: none near). */
function place(source, lines, p) {
  let index = lines.findIndex((line) => line.end >= p);
  if (index < 0) index = lines.length - 1;
  const found = [nearestOnLine(source, lines, index, p)];
  const first = Math.max(0, index - LINES_AROUND);
  let back = null; // the last place above
  for (let i = index - 1; i >= first && back === null; i -= 1) {
    back = nearestOnLine(source, lines, i, lines[i].end);
  }
  const last = Math.min(lines.length - 1, index + LINES_AROUND);
  let ahead = null; // the first place below
  for (let i = index + 1; i <= last && ahead === null; i += 1) {
    ahead = nearestOnLine(source, lines, i, lines[i].start);
  }
  found.push(back, ahead);
  let best = null;
  for (const q of found) {
    if (q !== null && (best === null || Math.abs(q - p) < Math.abs(best - p))) best = q;
  }
  return best;
}

/**
 * `source` (Markdown) with `sentinel` at each seam (`{at, label}`, `at` an offset into it),
 * each moved to where it fits; and the seams' labels in the order of the sentinels.
 */
export function placeSeams(source, seams, sentinel) {
  if (!seams.length || !sentinel) return { text: source, labels: [] };
  const lines = linesOf(source);
  const placed = [];
  for (const seam of seams) {
    const at = place(source, lines, Math.min(Math.max(seam.at, 0), source.length));
    if (at !== null) placed.push({ at, label: seam.label });
  }
  placed.sort((a, b) => a.at - b.at);
  let text = "";
  let from = 0;
  for (const { at } of placed) {
    text += source.slice(from, at) + sentinel;
    from = at;
  }
  return { text: text + source.slice(from), labels: placed.map((seam) => seam.label) };
}

/** How many times `sentinel` is in `text`. */
export function countIn(text, sentinel) {
  return sentinel ? text.split(sentinel).length - 1 : 0;
}

/** `code` without `sentinel`, and the offsets (in that bare code) where it was. */
export function lift(code, sentinel) {
  if (!sentinel || !code.includes(sentinel)) return { bare: code, offsets: [] };
  const pieces = code.split(sentinel);
  const offsets = [];
  let at = 0;
  for (const piece of pieces.slice(0, -1)) {
    at += piece.length;
    offsets.push(at);
  }
  return { bare: pieces.join(""), offsets };
}

/**
 * `html` (the highlighter's output for the bare code) with `sentinel` put back at `offsets`
 * of its text: tags count for nothing, an entity for the one character it stands for.
 */
export function plant(html, sentinel, offsets) {
  if (!offsets.length) return html;
  let out = "";
  let count = 0;
  let k = 0;
  let i = 0;
  while (i < html.length) {
    while (k < offsets.length && offsets[k] === count) {
      out += sentinel;
      k += 1;
    }
    let end = i + 1;
    if (html[i] === "<") end = html.indexOf(">", i) + 1 || html.length;
    else if (html[i] === "&") end = html.indexOf(";", i) + 1 || i + 1;
    if (html[i] !== "<") count += 1;
    out += html.slice(i, end);
    i = end;
  }
  return out + sentinel.repeat(offsets.length - k);
}

/** The marker of one seam: empty (no text to copy), labelled for the eye and the ear. */
export function seamMarker(label) {
  const marker = document.createElement("span");
  marker.className = "seam";
  marker.setAttribute("role", "img");
  marker.setAttribute("aria-label", label);
  marker.title = label;
  return marker;
}

const ATTRIBUTES = ["href", "src", "title", "alt"];

/**
 * Replace each `sentinel` in `root` (a rendered, sanitized fragment) by the marker of the
 * next of `labels`. One that ended up in an attribute (a link's address) is taken out of it
 * and marked after its element.
 */
export function drawSeams(root, sentinel, labels) {
  if (!sentinel || !labels.length) return;
  const encoded = encodeURIComponent(sentinel);
  const nodes = [];
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) nodes.push(node);
  let next = 0;
  const marker = () => seamMarker(labels[Math.min(next++, labels.length - 1)]);
  for (const node of nodes) {
    if (node.nodeType === Node.TEXT_NODE) {
      if (!node.data.includes(sentinel)) continue;
      const pieces = node.data.split(sentinel);
      const parts = [pieces[0]];
      for (const piece of pieces.slice(1)) parts.push(marker(), piece);
      node.replaceWith(...parts.filter((part) => part !== ""));
      continue;
    }
    let found = 0;
    for (const name of ATTRIBUTES) {
      const value = node.getAttribute(name);
      if (value === null) continue;
      const bare = value.replaceAll(sentinel, "").replaceAll(encoded, "");
      if (bare === value) continue;
      found += countIn(value, sentinel) + countIn(value, encoded);
      node.setAttribute(name, bare);
    }
    if (found) node.after(...Array.from({ length: found }, marker));
  }
}

/** Plain `text` with the markers of `seams` (`{at, label}`) in it: the page without Markdown. */
export function plainWithSeams(text, seams) {
  const fragment = document.createDocumentFragment();
  let from = 0;
  for (const seam of [...seams].sort((a, b) => a.at - b.at)) {
    const at = Math.min(Math.max(seam.at, from), text.length);
    fragment.append(text.slice(from, at), seamMarker(seam.label));
    from = at;
  }
  fragment.append(text.slice(from));
  return fragment;
}
