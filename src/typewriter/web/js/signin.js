// Signing in with an API key, when typewriter's auth is on: a modal dialog (index.html,
// #sign-in) asks for the key, masked, says where keys come from, and checks the key with the
// server before keeping it, so a wrong key is told in the dialog instead of failing every
// call after it. The key is kept in this browser's localStorage; "Sign out" (in the top bar,
// shown while a key is kept) forgets it and opens the dialog again, to switch keys.
//
// This module knows nothing of the calls that needed the key: api.js asks `signIn()` after a
// 401 and retries its call when it resolves true. Every call that fails at once waits for the
// same dialog, so a page that starts with three calls asks once.

import { t } from "./i18n.js";

const KEY_ITEM = "typewriter.apiKey";
const CHECK_PATH = "/v1/assistants"; // a call every key may make, and cheap

const $ = (id) => document.getElementById(id);

export function storedKey() {
  try {
    return localStorage.getItem(KEY_ITEM);
  } catch {
    return null;
  }
}

function keep(key) {
  try {
    if (key) localStorage.setItem(KEY_ITEM, key);
    else localStorage.removeItem(KEY_ITEM);
    return true;
  } catch {
    return false;
  }
}

let pending = null; // the open dialog's promise, shared by every call waiting for a key
let signOutButton = null;

/** Show "Sign out" while a key is kept. */
function refreshSignOut() {
  if (signOutButton) signOutButton.hidden = !storedKey();
}

/** Is `key` one the server accepts? null when that cannot be told (the network). */
async function accepted(key) {
  try {
    const response = await fetch(CHECK_PATH, {
      headers: { Accept: "application/json", Authorization: `Bearer ${key}` },
      cache: "no-store",
    });
    return response.status !== 401;
  } catch {
    return null;
  }
}

function openDialog(reason) {
  const dialog = $("sign-in");
  const form = $("sign-in-form");
  const input = $("sign-in-key");
  const error = $("sign-in-error");
  const show = $("sign-in-show");
  const back = document.activeElement;
  $("sign-in-reason").textContent = reason;
  input.value = "";
  input.type = "password";
  show.setAttribute("aria-pressed", "false");
  error.textContent = "";
  error.hidden = true;
  return new Promise((resolve) => {
    const fail = (text) => {
      error.textContent = text;
      error.hidden = false;
      input.setAttribute("aria-invalid", "true");
      input.focus();
      input.select();
    };
    const onSubmit = async (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) return fail(t("signin.empty"));
      const submit = $("sign-in-submit");
      submit.disabled = true;
      const verdict = await accepted(key);
      submit.disabled = false;
      if (!dialog.open) return; // cancelled while the key was checked
      if (verdict === false) return fail(t("signin.refused"));
      if (verdict === null) return fail(t("notice.networkShort"));
      if (!keep(key)) return fail(t("signin.storage"));
      done(true);
    };
    const onShow = () => {
      const shown = input.type === "password";
      input.type = shown ? "text" : "password";
      show.setAttribute("aria-pressed", String(shown));
      input.focus();
    };
    const onClose = () => done(false); // Esc or Cancel: the call fails as it did
    const done = (signedIn) => {
      form.removeEventListener("submit", onSubmit);
      show.removeEventListener("click", onShow);
      dialog.removeEventListener("close", onClose);
      input.removeAttribute("aria-invalid");
      if (dialog.open) dialog.close();
      input.value = "";
      refreshSignOut();
      if (back && back.isConnected && typeof back.focus === "function") back.focus();
      resolve(signedIn);
    };
    form.addEventListener("submit", onSubmit);
    show.addEventListener("click", onShow);
    dialog.addEventListener("close", onClose);
    dialog.showModal();
    input.focus();
  });
}

const REASONS = {
  missing_api_key: t("signin.needed"),
  invalid_api_key: t("signin.revoked"),
};

/** Ask for an API key (after a 401 with `code`); true once a key the server accepts is kept. */
export function signIn(code) {
  const reason = REASONS[code] || REASONS.missing_api_key;
  if (!pending) pending = openDialog(reason).finally(() => (pending = null));
  return pending;
}

/** Forget the key and start again from a clean page: the next call asks for a key. */
function signOut() {
  keep(null);
  // Another key is another user, with other conversations: nothing of this one stays on screen.
  location.assign("/");
}

/** Add "Sign out" to the top bar (hidden while no key is kept). */
export function wireSignIn() {
  signOutButton = document.createElement("button");
  signOutButton.type = "button";
  signOutButton.id = "sign-out";
  signOutButton.className = "button subtle small sign-out";
  signOutButton.textContent = t("signin.out");
  signOutButton.title = t("signin.outTitle");
  signOutButton.addEventListener("click", signOut);
  document.querySelector(".topbar").append(signOutButton);
  refreshSignOut();
  $("sign-in-cancel").addEventListener("click", () => $("sign-in").close());
}
