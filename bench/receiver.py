"""A minimal webhook receiver for the dispatcher bench, run in its own process
(``python -m bench.receiver PORT``) so it does not share the dispatcher's CPU time slice
or event loop: a raw ASGI app answering 204 to every POST, after reading the body."""

from __future__ import annotations

import sys
from typing import Any

import uvicorn


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        lifespan="off",
        http="httptools",
        loop="uvloop",
        access_log=False,
    )
