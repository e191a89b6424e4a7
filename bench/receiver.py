"""A minimal webhook receiver for the benches, run in its own process
(``python -m bench.receiver PORT [--delay S] [--hold-every N --hold S] [--status CODE]``) so
it does not share the dispatcher's CPU time slice or event loop: a raw ASGI app answering
every POST, after reading the body.

Options (the shutdown bench's; without them it answers 204 at once, as the dispatcher bench
wants):

- ``--delay S``: answer each request S seconds after it arrived (sends stay in flight);
- ``--hold-every N --hold S``: the first arrival of every Nth new ``webhook-id`` is answered
  after S seconds instead (longer than a stopping replica waits, so it abandons them);
- ``--status CODE``: answer CODE instead of 204 (a failing endpoint).

Each request that carries a ``webhook-id`` is logged as ``[arrival time (epoch s), id,
path]``; ``GET /log?from=N`` answers the entries from the Nth on as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import uvicorn

ARRIVALS: list[tuple[float, str, str]] = []
SEEN: set[str] = set()
OPTIONS = argparse.Namespace(delay=0.0, hold_every=0, hold=0.0, status=204)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["method"] == "GET":
        query = dict(
            part.split("=", 1) for part in scope["query_string"].decode().split("&") if "=" in part
        )
        body = json.dumps(ARRIVALS[int(query.get("from", "0")) :]).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    arrived = time.time()
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    webhook_id = next((v.decode() for k, v in scope["headers"] if k == b"webhook-id"), None)
    delay = OPTIONS.delay
    if webhook_id is not None:
        ARRIVALS.append((arrived, webhook_id, scope["path"]))
        if webhook_id not in SEEN:
            SEEN.add(webhook_id)
            if OPTIONS.hold_every and len(SEEN) % OPTIONS.hold_every == 0:
                delay = OPTIONS.hold
    if delay:
        await asyncio.sleep(delay)
    await send({"type": "http.response.start", "status": OPTIONS.status, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.receiver")
    parser.add_argument("port", type=int)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--hold-every", type=int, default=0)
    parser.add_argument("--hold", type=float, default=0.0)
    parser.add_argument("--status", type=int, default=204)
    args = parser.parse_args(argv)
    vars(OPTIONS).update(vars(args))
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        lifespan="off",
        http="httptools",
        loop="uvloop",
        access_log=False,
    )


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
