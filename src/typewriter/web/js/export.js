// Export: the branch of the open conversation on screen saved as a Markdown file, as the server writes it
// (GET /v1/conversations/{id}/export, the same file the terminal client saves). The file is
// fetched with the API key, as every call of the page is, and saved from a data: URL: a plain
// link could not send the key, and a download needs nothing of the page's CSP.

import { fetchDataUrl } from "./api.js";
import { makeButton, ui } from "./dom.js";
import { t } from "./i18n.js";
import { announce, showError } from "./notice.js";
import { state } from "./state.js";
import { shownLeaf } from "./turn.js";

/** A file name from the title, as the server makes it: letters, digits, `-` and `_`. */
function fileName(title) {
  const stem = title
    .normalize("NFC")
    .replace(/[^\p{L}\p{N}_-]+/gu, "-")
    .replace(/^[-_]+|[-_]+$/g, "")
    .slice(0, 60)
    .replace(/[-_]+$/, "");
  return `${stem || t("export.file")}.md`;
}

async function exportConversation() {
  const conversation = state.conversation;
  if (!conversation) return;
  let url;
  try {
    const leaf = shownLeaf(); // the branch on screen
    const through = leaf ? `&through=${encodeURIComponent(leaf)}` : "";
    url = await fetchDataUrl(
      `/v1/conversations/${encodeURIComponent(conversation.id)}/export?format=markdown${through}`,
    );
  } catch (error) {
    showError(error, exportConversation);
    return;
  }
  const link = document.createElement("a");
  link.href = url;
  link.download = fileName(conversation.title);
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  announce(t("export.done"));
}

/** The Export button, first of the open conversation's actions (shown with them). */
export function wireExport() {
  const button = makeButton(t("export.button"), "download", {
    className: "icon-button",
    iconOnly: true,
    onClick: exportConversation,
  });
  button.id = "export";
  ui.actions.prepend(button);
}
