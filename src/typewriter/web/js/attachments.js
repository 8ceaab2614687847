// Images attached to the next question: by the Attach button, by pasting one into the message
// box, or by dropping one on the composer. Offered only while the chosen assistant accepts
// images (`accepts_images` of GET /v1/assistants); choosing one that does not drops what was
// attached, with a word saying so, rather than sending images the server would refuse.
//
// Each image is read into a data: URL, which is both the thumbnail shown before sending and the
// `images[].data_url` POST /v1/chat takes. Stored images come back as /v1/attachments/{id},
// fetched with the API key (an <img src> cannot send it) and shown as data: URLs too, so the
// page's CSP needs nothing beyond `img-src 'self' data:`.

import { fetchDataUrl, readAsDataUrl } from "./api.js";
import { h, makeButton, ui } from "./dom.js";
import { t } from "./i18n.js";
import { announce } from "./notice.js";
import { state } from "./state.js";

const TYPES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);
const MAX_IMAGES = 8;
let pending = []; // [{ name, dataUrl }]

/** Whether the assistant chosen in the picker reads images. */
export function acceptsImages() {
  const chosen = state.assistants.find((a) => a.name === ui.assistant.value);
  return Boolean(chosen && chosen.accepts_images);
}

/** The images to send with the next question, as POST /v1/chat's `images`. */
export function pendingImages() {
  return pending.map((image) => ({ data_url: image.dataUrl }));
}

/** Take the attached images away (they were sent), returning them to put back on failure. */
export function takePending() {
  const taken = pending;
  pending = [];
  drawPending();
  return taken;
}

export function restorePending(images) {
  pending = [...images, ...pending].slice(0, MAX_IMAGES);
  drawPending();
}

async function attach(files) {
  const images = [...files].filter((file) => TYPES.has(file.type));
  if (images.length < files.length) announce(t("attach.types"));
  for (const file of images) {
    if (pending.length >= MAX_IMAGES) {
      announce(t("attach.tooMany", { count: MAX_IMAGES }));
      break;
    }
    pending.push({ name: file.name || t("attach.image"), dataUrl: await readAsDataUrl(file) });
  }
  drawPending();
}

function drawPending() {
  const thumbs = pending.map((image, index) => {
    const item = h("div", "thumb");
    const img = h("img");
    img.src = image.dataUrl;
    img.alt = image.name;
    const remove = makeButton(t("attach.remove", { name: image.name }), "close", {
      className: "thumb-remove",
      iconOnly: true,
      onClick: () => {
        pending = pending.filter((_, i) => i !== index);
        drawPending();
        ui.message.focus();
      },
    });
    item.append(img, remove);
    return item;
  });
  ui.pending.replaceChildren(...thumbs);
  ui.pending.hidden = thumbs.length === 0;
}

/** Show or hide Attach for the chosen assistant (a listener of the picker and the state). */
export function refreshAttach() {
  const accepts = acceptsImages();
  ui.attach.hidden = !accepts;
  if (!accepts && pending.length) {
    takePending();
    announce(t("attach.dropped"));
  }
}

/** The images of a stored question, fetched with the API key, into `container`. */
export function showStoredImages(container, attachments) {
  for (const attachment of attachments) {
    const img = h("img", "question-image");
    img.alt = t("image.attached");
    container.append(img);
    fetchDataUrl(attachment.url).then(
      (url) => {
        img.src = url;
      },
      () => {
        img.alt = t("image.failed");
      },
    );
  }
}

export function wireAttachments() {
  ui.attach.addEventListener("click", () => ui.attachInput.click());
  ui.attachInput.addEventListener("change", () => {
    attach(ui.attachInput.files);
    ui.attachInput.value = "";
  });
  ui.message.addEventListener("paste", (event) => {
    const files = event.clipboardData ? [...event.clipboardData.files] : [];
    if (!files.length || !acceptsImages()) return; // text pastes as text
    event.preventDefault();
    attach(files);
  });
  ui.composer.addEventListener("dragover", (event) => {
    if (!acceptsImages() || !event.dataTransfer?.types.includes("Files")) return;
    event.preventDefault();
    ui.composer.classList.add("dropping");
  });
  ui.composer.addEventListener("dragleave", () => ui.composer.classList.remove("dropping"));
  ui.composer.addEventListener("drop", (event) => {
    ui.composer.classList.remove("dropping");
    const files = event.dataTransfer ? [...event.dataTransfer.files] : [];
    if (!files.length || !acceptsImages()) return;
    event.preventDefault();
    attach(files);
  });
  ui.assistant.addEventListener("change", refreshAttach);
}
