// Every call the page makes to typewriter goes through here: `api()` for JSON requests, and
// `client` (typewriter.js, the module other pages import too) for following streams and
// stopping them. With API keys on, the key is asked for on the first 401 (signin.js: a
// dialog), then kept in this browser's localStorage, and the call that needed it is made
// again; EventSource cannot send headers, so its URL carries a ticket that the server signs
// (`events_url` of an answer, or POST /v1/tickets for a stream known by id), which
// typewriter.js renews by itself when it expires.

import { signIn, storedKey } from "./signin.js";
import { Typewriter, TypewriterError } from "./typewriter.js";

/** The page's connection to its gateway: the key kept in this browser, asked for on a 401. */
export const client = new Typewriter({ apiKey: storedKey, onUnauthorized: signIn });

/** A failed call: `status` 0 means the network (no answer at all). */
export const ApiError = TypewriterError;

/**
 * Call the API. `body` (an object) is sent as JSON. Resolves to the parsed JSON answer, or
 * `null` for an empty one (204); rejects with an ApiError carrying the server's error.
 */
export function api(path, options = {}) {
  return client.request(path, options);
}

/** A stored file of the API (an attachment) as a data: URL, fetched with the API key: an
 * <img src> could not send it, and a data: URL needs nothing more of the page's CSP. */
export async function fetchDataUrl(path) {
  const response = await fetch(path, { headers: client.headers({ Accept: "image/*" }) });
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

/** The events URL of a stream known only by id (a message that is still streaming). */
export function streamEventsUrl(streamId) {
  return client.eventsUrl(streamId);
}
