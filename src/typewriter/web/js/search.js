// The search box at the top of the sidebar. The server searches (GET /v1/conversations?q=:
// titles and every message's text, substrings in any script), so what is found is not limited
// to the conversations loaded so far. Typing waits a moment before it asks (each keystroke
// would be a request otherwise); the results replace the list while there is a query, and
// Escape or an empty box brings the list back.

import { ui } from "./dom.js";
import { loadList, searchFor } from "./list.js";

const PAUSE_MS = 250;
let timer = 0;

function search() {
  clearTimeout(timer);
  timer = 0;
  searchFor(ui.search.value.trim());
  loadList();
}

export function wireSearch() {
  ui.search.addEventListener("input", () => {
    clearTimeout(timer);
    if (!ui.search.value.trim()) search(); // emptied: the list again, at once
    else timer = setTimeout(search, PAUSE_MS);
  });
  ui.search.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      search();
    } else if (event.key === "Escape" && ui.search.value) {
      event.preventDefault();
      event.stopPropagation(); // clear the box; a second Escape closes a small screen's panel
      ui.search.value = "";
      search();
    }
  });
}
