// Following one answer's stream with EventSource.
//
// The stream is an append-only log of numbered events. EventSource reconnects by itself after
// a network blip and sends Last-Event-ID, so the server resumes right after the last event
// received: nothing twice, nothing missing. After `end` the source is closed (and the server
// would answer 204 to a reconnect anyway). Events are also de-duplicated here by their id, so
// even a misbehaving proxy cannot make the page show a piece twice.

import { eventsUrl } from "./api.js";

function parse(event) {
  try {
    return JSON.parse(event.data);
  } catch {
    return {};
  }
}

export class Follower {
  /**
   * `url`: the stream's events URL. `handlers`: onStart(data), onDelta(text),
   * onReasoning(text) (the model's thinking, before its answer), onError(data),
   * onEnd(data), onConnection(state) with state "open", "reconnecting" or "closed" (the
   * browser gave up: the stream is gone or refused; `reopen()` tries again from where it was).
   */
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.lastId = 0;
    this.ended = false;
    this.source = null;
  }

  /** Open (or reopen) the stream after the last event received; from the start at first. */
  open() {
    if (this.ended) return;
    this.close();
    const source = new EventSource(eventsUrl(this.url, this.lastId));
    this.source = source;
    const on = (name, handler) => source.addEventListener(name, handler);
    on("open", () => this.handlers.onConnection?.("open"));
    on("start", (event) => {
      if (this.fresh(event)) this.handlers.onStart?.(parse(event));
    });
    on("delta", (event) => {
      if (this.fresh(event)) this.handlers.onDelta?.(parse(event).text ?? "");
    });
    on("reasoning", (event) => {
      if (this.fresh(event)) this.handlers.onReasoning?.(parse(event).text ?? "");
    });
    on("end", (event) => {
      if (!this.fresh(event)) return;
      this.ended = true;
      this.close();
      this.handlers.onEnd?.(parse(event));
    });
    // "error" is both the server's event (a MessageEvent with data) and EventSource's own
    // signal of a connection problem (a plain Event).
    on("error", (event) => {
      if (event instanceof MessageEvent && event.data !== undefined && event.data !== "") {
        if (this.fresh(event)) this.handlers.onError?.(parse(event));
        return;
      }
      if (this.ended || source !== this.source) return;
      const closed = source.readyState === EventSource.CLOSED;
      if (closed) this.source = null;
      this.handlers.onConnection?.(closed ? "closed" : "reconnecting");
    });
    return this;
  }

  /** True for an event not seen before (ids only grow); remembers its id. */
  fresh(event) {
    const id = Number(event.lastEventId);
    if (!Number.isInteger(id) || id <= 0) return true;
    if (id <= this.lastId) return false;
    this.lastId = id;
    return true;
  }

  get active() {
    return this.source !== null;
  }

  close() {
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  }
}
