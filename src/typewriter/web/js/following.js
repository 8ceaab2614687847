// Following answers' streams (one Stream of typewriter.js each) while they are written.
//
// typewriter.js does the streaming itself (EventSource resumed by Last-Event-ID, events
// de-duplicated by id, an expired ticket renewed); this module says what it means for the page.
//
// A stream is followed until it ends, also after the reader opened another conversation: the
// answer goes on being written into its Answer, and opening its conversation again shows that
// same Answer (followedAnswer) instead of replaying the stream. What the reader is told (the
// connection notice, "Answer complete.") is only about the open conversation. The registry of
// open streams is this module's own: nothing else opens or closes them.

import { seamsFrom } from "./answer.js";
import { api, client } from "./api.js";
import { ending } from "./endings.js";
import { t } from "./i18n.js";
import { announce, describe, hideNotice, showNotice } from "./notice.js";
import { state } from "./state.js";
import { Stream } from "./typewriter.js";

const MAX_FOLLOWED = 4; // open EventSources; browsers allow ~6 connections per host over HTTP/1.1
const followed = new Map(); // stream id -> Answer whose stream is followed

/** The Answer whose stream `streamId` is being followed, if any. */
export function followedAnswer(streamId) {
  return followed.get(streamId) ?? null;
}

function inView(answer) {
  return Boolean(state.conversation) && answer.conversationId === state.conversation.id;
}

/** Follow `answer`'s stream at `url` (its events_url) from the first event. */
export function follow(answer, url) {
  const target = { events_url: url, stream_id: answer.streamId };
  const follower = new Stream(client, target, {
    onStart(data) {
      if (!answer.id) answer.id = data.message_id;
      if (!answer.assistant) {
        // `model` of the start event names the assistant; its model is in the list
        const listed = state.assistants.find((a) => a.name === data.model);
        answer.setAuthor(data.model, listed ? listed.model : null);
      }
      if (answer.status === "pending") answer.status = "streaming";
    },
    onDelta(text) {
      answer.append(text);
    },
    onReasoning(text) {
      answer.appendReasoning(text);
    },
    onNotice(data) {
      // the upstream failed and the next one of the chain goes on with the answer
      if (data.code === "failover") answer.continued(data);
    },
    onError(data) {
      answer.error = data; // told with the ending, which follows at once
    },
    onEnd(data) {
      followed.delete(answer.streamId);
      answer.finish(data);
      if (inView(answer)) {
        hideNotice("connection");
        announce(ending(answer).text || t("follow.complete"));
      }
    },
    onConnection(connection) {
      connectionChanged(answer, connection);
    },
  });
  answer.follower = follower;
  followed.set(answer.streamId, answer);
  follower.open();
  // Too many open streams would starve the page of connections: let the oldest ones that
  // are not on screen go (they keep generating on the server for its grace period).
  for (const [streamId, other] of followed) {
    if (followed.size <= MAX_FOLLOWED) break;
    if (inView(other)) continue;
    other.follower.close();
    followed.delete(streamId);
  }
}

function connectionChanged(answer, connection) {
  if (!inView(answer)) {
    if (connection === "closed") followed.delete(answer.streamId);
    return;
  }
  if (connection === "open") {
    hideNotice("connection");
  } else if (connection === "reconnecting") {
    showNotice(t("follow.reconnecting"), {
      kind: "connection",
      retry: () => answer.follower.open(),
    });
  } else {
    recover(answer);
  }
}

/** The browser gave up on a stream (gone, refused): show what the server stored instead. */
async function recover(answer) {
  const retry = () => {
    hideNotice();
    answer.follower.open();
  };
  try {
    const conversation = await api(`/v1/conversations/${encodeURIComponent(answer.conversationId)}`);
    const stored = conversation.messages.find((m) => m.id === answer.id);
    if (stored && stored.status !== "streaming") {
      followed.delete(answer.streamId);
      answer.replaceText(stored.text, stored.reasoning || "", seamsFrom(stored.sources, stored.text));
      if (stored.status === "interrupted") answer.error = { code: "interrupted" };
      answer.finish({ finish_reason: stored.finish_reason || "error" });
      hideNotice("connection");
      return;
    }
    showNotice(t("follow.lost"), { kind: "connection", retry });
  } catch (error) {
    showNotice(t("follow.lostBecause", { reason: describe(error) }), {
      kind: "connection",
      retry,
    });
  }
}

/** Stop and stop following the answers still being written in a conversation. */
export async function dropLive(conversationId) {
  for (const [streamId, answer] of followed) {
    if (answer.conversationId !== conversationId) continue;
    answer.follower.close();
    followed.delete(streamId);
    await client.stop(streamId).catch(() => {});
  }
}
