"""The chaos upstream: the scriptable upstream whose every chat request follows a seeded plan.

The chaos test runs hundreds of answers over several upstreams that die at chosen points. Each
upstream is this process: ``server.py``'s application (real sockets, real resets and stalls,
the same log and control API) with one more control call, ``POST /_control/chaos`` with
``{"seed": int, "name": str, "faults": [...], "tokens_per_second": float}`` (``faults``
optional: the kinds to choose from, all of :data:`chaos_schedule.FAULTS` by default;
``tokens_per_second`` optional: the pace of the chunks, 0 by default, as fast as possible).
Once it is set, a chat request's response is no longer taken from the queue but planned by
``chaos_schedule.plan`` from the seed, this upstream's name, the request's key (its first user
message) and how many requests with that key came before, so the same seed gives every answer
the same fate whatever order requests arrive in. ``POST /_control/reset`` forgets the plan
and the counts.

Every planned response is a ``chunks`` behaviour (the verbatim SSE body ``performance.py``
replays, with its stall and drop triggers), so what goes on the wire is exact. Each request's
log record gains ``chaos``: ``{"upstream", "key", "attempt", "fault", "after", "repeat",
"partial", "style", "mismatch", "contents"}`` where ``contents`` holds, per replayed item, the
text it carries (``""`` for the role, finish, usage, error, garbage and ``[DONE]`` items): with
``tokens_sent`` it tells what text was written to the connection (after a reset the client may
have lost some of it).

Run it as ``python tests/upstream/scripted_chaos.py --port 0`` (as ``server.py``); tests use
``chaos_control.ChaosUpstream``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from typing import Any

import chaos_schedule
import server
from behaviours import (
    MALFORMED_EVENT,
    dumps,
    error_body,
    prompt_token_count,
    validate_behaviour,
)
from exchange import Exchange, Scope
from performance import Performance


class ChaosApp(server.App):
    """``server.App`` with requests planned by a seed once ``/_control/chaos`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.chaos: dict[str, Any] | None = None
        self.attempts: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        path = str(scope.get("path", "")).rstrip("/")
        if scope.get("type") == "http" and path == "/_control/chaos":
            body = await server.read_body(receive)
            if body is None:
                return
            try:
                status, payload = 200, self.configure_chaos(server.json_object(body))
            except ValueError as exc:
                status, payload = 400, error_body(400, str(exc))
            await server.send_json(send, status, payload)
            return
        await super().__call__(scope, receive, send)

    def configure_chaos(self, update: dict[str, Any]) -> dict[str, Any]:
        seed, name = update.get("seed"), update.get("name")
        faults = update.get("faults", list(chaos_schedule.FAULTS))
        if not isinstance(seed, int) or not isinstance(name, str):
            raise ValueError('expected {"seed": int, "name": str}')
        if not (isinstance(faults, list) and faults and set(faults) <= set(chaos_schedule.FAULTS)):
            raise ValueError(f"faults must be a non-empty list of {chaos_schedule.FAULTS}")
        pace = update.get("tokens_per_second", 0)
        if not isinstance(pace, int | float) or pace < 0:
            raise ValueError("tokens_per_second must be a number >= 0")
        self.chaos = {"seed": seed, "name": name, "faults": faults, "tokens_per_second": pace}
        self.attempts.clear()
        return self.chaos

    async def control_reset(self, scope: Scope, body: bytes) -> tuple[int, Any]:
        self.chaos = None
        self.attempts.clear()
        return await super().control_reset(scope, body)

    async def produce(self, exchange: Exchange, raw: bytes) -> None:
        if self.chaos is None:
            await super().produce(exchange, raw)
            return
        record = exchange.record
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            await exchange.respond(
                400, dumps(error_body(400, "body is not a JSON object")), "application/json"
            )
            return
        record["body"] = body
        record["model"] = body.get("model")
        record["stream"] = body.get("stream") is True
        if not self.authorized(record["key"]):
            await exchange.respond(401, dumps(error_body(401)), "application/json")
            return
        seed, name = self.chaos["seed"], self.chaos["name"]
        key = chaos_schedule.first_user_text(body.get("messages"))
        attempt = self.attempts[key]
        self.attempts[key] += 1
        plan = chaos_schedule.plan(seed, name, key, attempt, self.chaos["faults"])
        reply = chaos_schedule.reply(seed, key, body, plan.repeat)
        behaviour, contents = planned_behaviour(
            plan, reply.tokens, body, self.chaos["tokens_per_second"]
        )
        record["behaviour"] = behaviour
        record["chaos"] = {
            "upstream": name,
            "key": key,
            "attempt": attempt,
            "fault": plan.fault,
            "after": min(plan.after, len(reply.tokens)),
            "repeat": plan.repeat,
            "partial": reply.partial,
            "style": reply.style,
            "mismatch": reply.mismatch,
            "contents": contents,
        }
        await Performance(exchange, body, behaviour).run()


def planned_behaviour(
    plan: chaos_schedule.Plan, tokens: list[str], body: dict[str, Any], pace: float = 0
) -> tuple[dict[str, Any], list[str]]:
    """The ``chunks`` behaviour acting ``plan`` out, and each item's text."""
    if plan.fault == "status":
        overloaded = {"status": 503, "error_message": "The upstream is overloaded (scheduled)."}
        return validate_behaviour(overloaded), []
    model = body.get("model") if isinstance(body.get("model"), str) else "test-model"
    ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }

    after = min(plan.after, len(tokens))
    items: list[dict[str, Any] | str] = [chunk({"role": "assistant", "content": ""})]
    items += [chunk({"content": token}) for token in tokens]
    contents = ["", *tokens]
    behaviour: dict[str, Any] = {"tokens_per_second": pace}
    if plan.fault in ("reset", "broken"):
        behaviour["drop_after_tokens"] = 1 + after
        behaviour["drop_mode"] = "rst" if plan.fault == "reset" else "fin"
    elif plan.fault == "stall":
        behaviour["stall_after_tokens"] = 1 + after
    elif plan.fault == "error":
        items = [
            *items[: 1 + after],
            error_body(500, "The upstream failed mid-stream (scheduled)."),
        ]
        contents = [*contents[: 1 + after], ""]
    elif plan.fault == "garbage":
        items = [*items[: 1 + after], MALFORMED_EVENT.decode()]
        contents = [*contents[: 1 + after], ""]
    else:  # finish
        items.append(chunk({}, "stop"))
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            prompt = prompt_token_count(body)
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": len(tokens),
                "total_tokens": prompt + len(tokens),
            }
            items.append({**chunk({}), "choices": [], "usage": usage})
        items.append("data: [DONE]\n\n")
        contents += [""] * (len(items) - len(contents))
    behaviour["chunks"] = items
    return validate_behaviour(behaviour), contents


if __name__ == "__main__":
    server.main(app=ChaosApp)
