// Every call the page makes to typewriter goes through here: `api()` for JSON requests and
// `eventsUrl()` for what EventSource opens. When API keys arrive, this is the one place that
// adds the `Authorization` header (EventSource cannot send headers: its URL carries a ticket).

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
  // Auth (a later issue): result.Authorization = `Bearer ${key}`;
  return result;
}

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
export async function api(path, { method = "GET", body, signal } = {}) {
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
    throw new ApiError(0, "network", "typewriter cannot be reached: check your connection.");
  }
  const text = await response.text().catch(() => "");
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

/** The URL EventSource should open for `eventsUrl` (as the API gave it), resuming after `after`. */
export function eventsUrl(url, after = 0) {
  if (!after) return url;
  const joined = new URL(url, location.href);
  joined.searchParams.set("last_event_id", String(after));
  return joined.pathname + joined.search;
}

/** The events URL of a stream known only by id (a message that is still streaming). */
export function streamEventsUrl(streamId) {
  return `/v1/streams/${encodeURIComponent(streamId)}/events`;
}
