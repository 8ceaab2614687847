// Every call the page makes to typewriter goes through here: `api()` for JSON requests and
// `eventsUrl()` for what EventSource opens. With API keys on, this is the one place that adds
// the `Authorization` header; EventSource cannot send headers, so its URL carries a ticket that
// the server signs (`events_url` of an answer, or POST /v1/tickets for a stream known by id).
// The key is asked for on the first 401 (signin.js: a dialog), then kept in this browser's
// localStorage, and the call that needed it is made again.

import { t } from "./i18n.js";
import { signIn, storedKey } from "./signin.js";

/** A failed call: `status` 0 means the network (no answer at all). */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter; // seconds, from Retry-After on a 429 or 503
  }

  get network() {
    return this.status === 0;
  }
}

function headers(extra) {
  const result = { Accept: "application/json", ...extra };
  const key = storedKey();
  if (key) result.Authorization = `Bearer ${key}`;
  return result;
}

const SIGN_IN_CODES = new Set(["missing_api_key", "invalid_api_key"]);

function retryAfterSeconds(response) {
  const value = response.headers.get("Retry-After");
  if (!value) return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

/**
 * Call the API. `body` (an object) is sent as JSON. Resolves to the parsed JSON answer, or
 * `null` for an empty one (204); rejects with an ApiError carrying the server's error.
 */
export async function api(path, options = {}) {
  const key = storedKey();
  try {
    return await call(path, options);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401 && SIGN_IN_CODES.has(error.code)) {
      // Signed in meanwhile (another call's dialog): try the new key before asking again.
      if (storedKey() !== key || (await signIn(error.code))) return call(path, options);
    }
    throw error;
  }
}

async function call(path, { method = "GET", body, signal } = {}) {
  const init = { method, headers: headers(), signal, cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network", t("notice.networkShort"));
  }
  const text = await response.text().catch((error) => {
    if (error.name === "AbortError") throw error; // cancelled while the body was read
    return "";
  });
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = data && data.error ? data.error : {};
    throw new ApiError(
      response.status,
      error.code || `http_${response.status}`,
      error.message || `${response.status} ${response.statusText}`.trim(),
      retryAfterSeconds(response),
    );
  }
  return data;
}

/** A stored file of the API (an attachment) as a data: URL, fetched with the API key: an
 * <img src> could not send it, and a data: URL needs nothing more of the page's CSP. */
export async function fetchDataUrl(path) {
  const response = await fetch(path, { headers: headers({ Accept: "image/*" }) });
  if (!response.ok) throw new ApiError(response.status, `http_${response.status}`, response.statusText);
  return readAsDataUrl(await response.blob());
}

/** A blob (a fetched attachment, a file picked to attach) as a data: URL. */
export function readAsDataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

/** The URL EventSource should open for `eventsUrl` (as the API gave it), resuming after `after`. */
export function eventsUrl(url, after = 0) {
  if (!after) return url;
  const joined = new URL(url, location.href);
  joined.searchParams.set("last_event_id", String(after));
  return joined.pathname + joined.search;
}

/** The events URL of a stream known only by id (a message that is still streaming). */
export async function streamEventsUrl(streamId) {
  const plain = `/v1/streams/${encodeURIComponent(streamId)}/events`;
  if (!storedKey()) return plain; // auth off: no ticket needed
  const reply = await api("/v1/tickets", { method: "POST", body: { stream_id: streamId } });
  return reply.events_url;
}
