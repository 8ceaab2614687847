// typewriter in the browser: asking, following an answer as it is written, Stop, and the
// user's channel, as one self-contained ES module (no imports, no build step). The chat page
// uses it for all of that, and any other page may import it from the gateway:
//
//   import { Typewriter } from "https://typewriter.example/typewriter.js";
//   const tw = new Typewriter({ apiKey: "tw_…" });
//   const reply = await tw.ask("Hello");                    // POST /v1/chat, detached
//   const stream = tw.follow(reply, { onDelta: (text) => out.append(text) });
//   const end = await stream.finished;                      // { finish_reason, … }
//
// docs/browser.md documents it. Why it is built the way it is:
// - A stream is an append-only log of numbered events. EventSource reconnects by itself after
//   a network blip and sends Last-Event-ID, so the server resumes right after the last event
//   received; events are also de-duplicated here by id, so even a misbehaving proxy cannot
//   deliver a piece twice. After `end` the source is closed (a reconnect would get 204).
// - EventSource cannot send headers, so with API keys on its URL carries a ticket that lives
//   `ticket_ttl` seconds. A reconnect after that is refused (401) and EventSource gives up for
//   good; this module notices, asks POST /v1/tickets for a fresh URL with the API key, and
//   reopens after the last event received, so a long outage costs nothing either.
// - Requests go to the gateway this module was loaded from, unless told otherwise, so a page
//   on another origin needs no configuration beyond the gateway's `cors_origins`.

const HERE = new URL(import.meta.url).origin;
const SIGN_IN_CODES = new Set(["missing_api_key", "invalid_api_key"]);
const STREAM_EVENTS = /\/v1\/streams\/([^/]+)\/events$/;

/** A failed call: the server's error (`status`, `code`), or `status` 0 for the network. */
export class TypewriterError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.name = "TypewriterError";
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter; // seconds, from Retry-After on a 429 or 503
  }

  /** True when no answer came at all (the network, or the gateway down). */
  get network() {
    return this.status === 0;
  }
}

function retryAfterSeconds(response) {
  const value = response.headers.get("Retry-After");
  if (!value) return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

function parse(event) {
  try {
    return JSON.parse(event.data);
  } catch {
    return {};
  }
}

/** A connection to one typewriter gateway. */
export class Typewriter {
  /**
   * `baseUrl`: the gateway (default: the origin this module was loaded from).
   * `apiKey`: an API key, or a function returning the current one (null when auth is off).
   * `onUnauthorized(code)`: called when a call is refused for want of a valid key
   * (`missing_api_key`, `invalid_api_key`); resolve true once a new key is available and the
   * call is made again, once. Several calls refused at once may share one prompt.
   */
  constructor({ baseUrl = HERE, apiKey = null, onUnauthorized = null } = {}) {
    this.baseUrl = String(baseUrl).replace(/\/+$/, "");
    this.apiKey = apiKey;
    this.onUnauthorized = onUnauthorized;
  }

  /** The API key in use now (null: none). */
  key() {
    return (typeof this.apiKey === "function" ? this.apiKey() : this.apiKey) || null;
  }

  /** The absolute URL of `path` on the gateway (an absolute URL stays as it is). */
  url(path) {
    return new URL(path, `${this.baseUrl}/`).href;
  }

  /** The headers of a call: JSON, and the key when there is one. */
  headers(extra = {}) {
    const result = { Accept: "application/json", ...extra };
    const key = this.key();
    if (key) result.Authorization = `Bearer ${key}`;
    return result;
  }

  /**
   * Call the API. `body` (an object) is sent as JSON. Resolves to the parsed JSON answer, or
   * `null` for an empty one (204); rejects with a TypewriterError carrying the server's error
   * (an AbortError when `signal` aborts it).
   */
  async request(path, options = {}) {
    const key = this.key();
    try {
      return await this.call(path, options);
    } catch (error) {
      const signIn = error instanceof TypewriterError && error.status === 401;
      if (signIn && SIGN_IN_CODES.has(error.code) && this.onUnauthorized) {
        // A new key meanwhile (another call's prompt): try it before asking again.
        if (this.key() !== key || (await this.onUnauthorized(error.code))) {
          return this.call(path, options);
        }
      }
      throw error;
    }
  }

  /** One call, as `request` but without asking for a key. */
  async call(path, { method = "GET", body, signal, headers = {} } = {}) {
    const init = { method, headers: this.headers(headers), signal, cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(this.url(path), init);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new TypewriterError(0, "network", "typewriter cannot be reached");
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
      throw new TypewriterError(
        response.status,
        error.code || `http_${response.status}`,
        error.message || `${response.status} ${response.statusText}`.trim(),
        retryAfterSeconds(response),
      );
    }
    return data;
  }

  /**
   * Ask a question, detached (POST /v1/chat): resolves at once to `{stream_id, events_url,
   * conversation_id, message_id, question_id}`; follow the answer with `follow(reply)`.
   * `fields` are the request's other fields: `assistant`, `conversation_id`, `parent_id`,
   * `images`, `options`.
   */
  ask(message, fields = {}, { signal } = {}) {
    return this.request("/v1/chat", { method: "POST", body: { ...fields, message }, signal });
  }

  /** Stop an answer on the server (POST /v1/streams/{id}/cancel); it ends `cancelled`. */
  stop(streamId) {
    return this.request(`/v1/streams/${encodeURIComponent(streamId)}/cancel`, { method: "POST" });
  }

  /**
   * A fresh events URL: of stream `streamId`, or of the user's channel when null. With a key
   * it carries a new ticket (POST /v1/tickets); without one (auth off) it is the plain URL.
   */
  async eventsUrl(streamId = null) {
    const plain = streamId ? `/v1/streams/${encodeURIComponent(streamId)}/events` : "/v1/events";
    if (!this.key()) return plain;
    const body = streamId ? { stream_id: streamId } : {};
    const reply = await this.request("/v1/tickets", { method: "POST", body });
    return reply.events_url;
  }

  /**
   * Follow an answer: `target` is the reply of `ask` (or of regenerate, edit), an events URL,
   * or `{stream_id}`. Opens at once; see Stream for `handlers`.
   */
  follow(target, handlers = {}) {
    const stream = new Stream(this, target, handlers);
    stream.open();
    return stream;
  }

  /** Follow the user's channel (GET /v1/events), every stream of the user; see Channel. */
  channel(handlers = {}, { after = null } = {}) {
    const channel = new Channel(this, handlers, after);
    channel.open();
    return channel;
  }
}

/**
 * What an EventSource-backed follower shares: opening at a resume point, telling the
 * connection's state, and renewing an expired ticket. Subclasses name the events to listen to
 * and what a fresh event is.
 */
class Source {
  constructor(client, url, handlers) {
    this.client = client;
    this.url = url; // as the API gave it, with its ticket
    this.handlers = handlers;
    this.source = null;
    this.ended = false;
    this.renewing = false; // a renewed URL not yet answered 200: a second refusal is final
    this.stopped = false; // closed by its owner: nothing reopens it but open()
  }

  /** The URL to open, resuming after the last event received (subclasses). */
  resumeUrl() {
    return this.client.url(this.url);
  }

  /**
   * Open (or reopen) after the last event received. Without a URL yet (a stream known by its
   * id, the channel) one is asked for first.
   */
  open() {
    if (this.ended) return this;
    this.stopped = false;
    this.renewing = false;
    if (this.url === null) this.renew(false);
    else this.connect();
    return this;
  }

  connect() {
    this.shut();
    const source = new EventSource(this.resumeUrl());
    this.source = source;
    source.addEventListener("open", () => {
      this.renewing = false;
      this.handlers.onConnection?.("open");
    });
    this.listen(source);
    // "error" is both the server's event (a MessageEvent with data) and EventSource's own
    // signal of a connection problem (a plain Event).
    source.addEventListener("error", (event) => {
      if (event instanceof MessageEvent && event.data !== undefined && event.data !== "") {
        this.received("error", event);
        return;
      }
      if (this.ended || source !== this.source) return;
      if (source.readyState !== EventSource.CLOSED) {
        this.handlers.onConnection?.("reconnecting");
        return;
      }
      // EventSource gave up: the server answered something else than 200 (a refused
      // ticket, the stream gone). A URL with a ticket is renewed once; a refusal of the
      // renewed URL before it ever opened is final.
      this.source = null;
      const ticketed = new URL(this.client.url(this.url)).searchParams.has("ticket");
      if (ticketed && !this.renewing && this.client.key()) this.renew(true);
      else this.handlers.onConnection?.("closed");
    });
  }

  /** Ask for a fresh events URL (a new ticket) and connect with it. */
  async renew(reconnecting) {
    this.renewing = true;
    if (reconnecting) this.handlers.onConnection?.("reconnecting");
    let url;
    try {
      url = await this.renewedUrl();
    } catch {
      if (!this.source && !this.ended && !this.stopped) this.handlers.onConnection?.("closed");
      return;
    }
    if (this.source || this.ended || this.stopped) return; // reopened or closed meanwhile
    this.url = url;
    this.connect();
  }

  /** Stop following (an open() later goes on from where it was). */
  close() {
    this.stopped = true;
    this.shut();
  }

  shut() {
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  }

  /** True while connected or reconnecting by itself. */
  get active() {
    return this.source !== null;
  }
}

/**
 * One answer's stream (GET /v1/streams/{id}/events), followed until its `end`.
 *
 * `handlers`: onStart(data), onDelta(text), onReasoning(text) (the model's thinking, before
 * its answer), onNotice(data) (a `notice` event: `{code, …}`; code "failover": the upstream
 * failed and `to` goes on with the answer, serving `model`), onToolCall(data), onError(data)
 * (an `error` event: `end` follows at once),
 * onEnd(data), onEvent(name, data, id) for every event, and onConnection(state) with state
 * "open", "reconnecting" or "closed" (given up: the stream is gone or refused; `open()` tries
 * again from where it was). `finished` resolves with the `end` event's data.
 */
export class Stream extends Source {
  constructor(client, target, handlers = {}) {
    const url = typeof target === "string" ? target : target.events_url;
    const given = typeof target === "string" ? null : target.stream_id;
    const path = url ? new URL(url, `${client.baseUrl}/`).pathname : "";
    const streamId = given ?? path.match(STREAM_EVENTS)?.[1];
    super(client, url ?? null, handlers);
    this.streamId = streamId ? decodeURIComponent(streamId) : null;
    this.lastId = 0; // the id of the last event received
    this.finished = new Promise((resolve) => {
      this.resolveFinished = resolve;
    });
  }

  resumeUrl() {
    const url = new URL(this.client.url(this.url));
    if (this.lastId) url.searchParams.set("last_event_id", String(this.lastId));
    return url.href;
  }

  renewedUrl() {
    if (!this.streamId) throw new Error("no stream id to renew the ticket of");
    return this.client.eventsUrl(this.streamId);
  }

  listen(source) {
    for (const name of ["start", "delta", "reasoning", "notice", "tool_call", "end"]) {
      source.addEventListener(name, (event) => this.received(name, event));
    }
  }

  received(name, event) {
    if (!this.fresh(event)) return;
    const data = parse(event);
    this.handlers.onEvent?.(name, data, this.lastId);
    if (name === "start") this.handlers.onStart?.(data);
    else if (name === "delta") this.handlers.onDelta?.(data.text ?? "");
    else if (name === "reasoning") this.handlers.onReasoning?.(data.text ?? "");
    else if (name === "notice") this.handlers.onNotice?.(data);
    else if (name === "tool_call") this.handlers.onToolCall?.(data);
    else if (name === "error") this.handlers.onError?.(data);
    else if (name === "end") {
      this.ended = true;
      this.shut();
      this.handlers.onEnd?.(data);
      this.resolveFinished(data);
    }
  }

  /** True for an event not seen before (ids only grow); remembers its id. */
  fresh(event) {
    const id = Number(event.lastEventId);
    if (!Number.isInteger(id) || id <= 0) return true;
    if (id <= this.lastId) return false;
    this.lastId = id;
    return true;
  }

  /** Stop the answer on the server; this stream then receives its `end` (`cancelled`). */
  stop() {
    return this.client.stop(this.streamId);
  }
}

/**
 * The user's channel (GET /v1/events): the events of all of the user's streams, each event's
 * data led by `stream_id` and `seq`. Resumes by its cursor (an opaque string) and drops an
 * event of a stream already delivered (its `seq` not beyond the last one seen).
 *
 * `handlers`: onConnected(data) (`{user, cursor}`), onEvent(name, data) for each stream event
 * (start, delta, reasoning, notice, tool_call, error, end), onReset(data) (the cursor could not be
 * resumed exactly: reload state, then apply what follows), onConnection(state) as for Stream.
 */
export class Channel extends Source {
  constructor(client, handlers = {}, after = null) {
    super(client, null, handlers);
    this.cursor = after; // the id of the last event received
    this.seqs = new Map(); // stream id -> last seq delivered
  }

  resumeUrl() {
    const url = new URL(this.client.url(this.url));
    if (this.cursor !== null) url.searchParams.set("last_event_id", this.cursor);
    return url.href;
  }

  renewedUrl() {
    return this.client.eventsUrl(null);
  }

  listen(source) {
    const names = ["connected", "reset", "start", "delta", "reasoning", "notice", "tool_call", "end"];
    for (const name of names) {
      source.addEventListener(name, (event) => this.received(name, event));
    }
  }

  received(name, event) {
    if (event.lastEventId) this.cursor = event.lastEventId;
    const data = parse(event);
    if (name === "connected") {
      this.handlers.onConnected?.(data);
    } else if (name === "reset") {
      this.seqs.clear();
      this.handlers.onReset?.(data);
    } else if (!Number.isInteger(data.seq)) {
      this.handlers.onEvent?.(name, data);
    } else if (data.seq > (this.seqs.get(data.stream_id) ?? 0)) {
      this.seqs.set(data.stream_id, data.seq);
      this.handlers.onEvent?.(name, data);
    }
  }
}
