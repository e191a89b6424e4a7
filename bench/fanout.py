"""Live fan-out against a raw WebSocket broadcast, in the same run (DESIGN §11).

Two servers, each in a process of its own, served to the same client processes (apart from
both servers):
- studio: the real app (SQLite, memory bus); every client subscribes to
  ``auditEvents { id type data }`` over graphql-transport-ws, all in one cohort. An event is
  published to the tenant's bus channel (the relay's step; the hub, the cohort execution and
  the per-socket sends are what is measured).
- raw: a minimal Starlette WebSocket endpoint that sends one pre-serialized frame to every
  socket it holds: the physical limit.

Reported: until-all latency per event (median, p99; an event's time is from the publish
request to the last client's receipt), server RSS per idle subscriber. ``--soak MIN`` then
runs governed mutations (``registerProvider`` over ``/graphql``, so each event takes the
whole path: audit row and outbox, relay, bus, hub, cohort, sockets) for MIN minutes, ~10 a
second, each waited for at every subscriber, and reports the server's RSS growth over the
last half (MIN/2 minutes: the issue's "last 5 minutes" of a 10-minute soak) and its slope.

``--slow-consumer`` and ``--redis-kill`` are ``bench.fanout_faults``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, cast

import httpx

TENANT = "acme"
REGISTER_PROVIDER = """
mutation ($input: RegisterProviderInput!) {
  registerProvider(input: $input) { provider { id } userErrors { code message } }
}
"""
DOCUMENT = "subscription { auditEvents { id type data } }"
CLIENT_PROCESSES = 2


def provider_input(key: str) -> dict[str, Any]:
    """A valid registerProvider input (its key must be new in the tenant)."""
    return {
        "key": key,
        "name": "Bench",
        "category": "HR",
        "capabilities": ["employees.read"],
        "authModes": ["API_KEY"],
        "baseUrl": "https://hr.example.com/api",
        "verification": {"method": "GET", "path": "/me", "expectStatus": 200},
    }


# --- servers (run as ``python -m bench.fanout serve studio|raw DIR``) ----------------------


class _GcPauses:
    """Full (generation 2) collections and their pauses, read through ``/live``: at 10,000
    subscribers one full collection walks every socket's objects."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._started)


def _tracked(request: Any) -> dict[str, int]:
    """Objects the cyclic collector tracks (``/live?objects=1``): what a full collection walks."""
    import gc

    return {"objects": len(gc.get_objects())} if request.query_params.get("objects") else {}


def _serve(kind: str, directory: str) -> None:
    import gc

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    pauses = _GcPauses()
    gc.callbacks.append(pauses)
    if kind == "raw":
        sockets: set[WebSocket] = set()

        async def endpoint(ws: WebSocket) -> None:
            await ws.accept(subprotocol="graphql-transport-ws")
            sockets.add(ws)
            try:
                while True:
                    await ws.receive_text()
            except WebSocketDisconnect:
                pass
            finally:
                sockets.discard(ws)

        async def publish(request: Request) -> JSONResponse:
            frame = json.dumps({"type": "next", "payload": await request.json()})
            await asyncio.gather(*(ws.send_text(frame) for ws in list(sockets)))
            return JSONResponse({})

        async def live(request: Request) -> JSONResponse:
            return JSONResponse({"live": len(sockets), "gc": pauses.pauses, **_tracked(request)})

        app = Starlette(
            routes=[
                WebSocketRoute("/graphql", endpoint),
                Route("/publish", publish, methods=["POST"]),
                Route("/live", live),
            ]
        )
        token = ""
    else:
        from studio_integrations.app import create_app
        from studio_integrations.auth.scopes import ALL_SCOPES
        from studio_integrations.auth.tokens import mint_dev_token
        from studio_integrations.core.clock import utcnow
        from studio_integrations.core.context import SYSTEM_ACTOR
        from studio_integrations.core.ids import new_id
        from studio_integrations.events.envelope import EventEnvelope, EventSubject
        from studio_integrations.persistence.migrations import upgrade
        from studio_integrations.settings import Settings

        url = f"sqlite+aiosqlite:///{directory}/bench.db"
        upgrade(url)
        settings = Settings(
            database_url=url,
            state_dir=Path(directory),
            max_subscriptions_per_tenant=100_000,
            ws_keep_alive_seconds=3600,
            # The soak's mutations come from one token at ~10/s: no per-minute budgets.
            tenant_mutations_per_minute=0,
            token_mutations_per_minute=0,
        )
        app = create_app(settings)
        token = mint_dev_token(settings, tenant=TENANT, subject="bench", scopes=ALL_SCOPES)

        async def publish(request: Request) -> JSONResponse:
            envelope = EventEnvelope(
                id=new_id("AuditEvent"),
                type="ProviderRegistered",
                tenant_id=TENANT,
                occurred_at=utcnow(),
                actor=SYSTEM_ACTOR,
                trace_id="0" * 32,
                subject=EventSubject("Provider", "prov_01JD8ZZZZZZZZZZZZZZZZZZZZZ"),
                data=await request.json(),
            )
            await app.state.services.bus.publish(TENANT, envelope.to_bus_json())
            return JSONResponse({})

        async def live(request: Request) -> JSONResponse:
            services = app.state.services
            dropped = services.hub.dropped if services.hub is not None else 0
            live = services.live_subscribers(TENANT)
            extra = {"gc": pauses.pauses, **_tracked(request)}
            return JSONResponse({"live": live, "dropped": dropped, **extra})

        async def pump(request: Request) -> JSONResponse:
            """Publish ``rate`` events a second for ``seconds`` from inside the server (no
            request per event), each carrying its number and its publish time (monotonic,
            one clock for every process of the machine)."""
            spec = await request.json()
            rate, total = float(spec["rate"]), round(spec["rate"] * spec["seconds"])
            start = time.monotonic()
            for i in range(total):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                envelope = EventEnvelope(
                    id=new_id("AuditEvent"),
                    type="ProviderRegistered",
                    tenant_id=TENANT,
                    occurred_at=utcnow(),
                    actor=SYSTEM_ACTOR,
                    trace_id="0" * 32,
                    subject=EventSubject("Provider", "prov_01JD8ZZZZZZZZZZZZZZZZZZZZZ"),
                    data={"n": i + 1, "t": time.monotonic()},
                )
                await app.state.services.bus.publish(TENANT, envelope.to_bus_json())
            end = time.monotonic()
            return JSONResponse({"emitted": total, "seconds": end - start, "end": end})

        app.router.routes += [
            Route("/publish", publish, methods=["POST"]),
            Route("/pump", pump, methods=["POST"]),
            Route("/live", live),
        ]

    from studio_integrations.app import WEBSOCKET_SERVER_OPTIONS

    # Both servers as ``serve`` runs: its WebSocket options, on uvloop (uvicorn.run's default
    # loop when uvloop is installed, as uvicorn[standard] does).
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        backlog=4096,
        **WEBSOCKET_SERVER_OPTIONS,
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110  (uvicorn offers no event)
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        print(json.dumps({"port": port, "token": token}), flush=True)
        await task

    import uvloop

    profile_path = os.environ.get("BENCH_PROFILE")  # cProfile of this server, on exit
    if not profile_path:
        uvloop.run(run())
        return
    import cProfile
    import signal

    # uvicorn raises the SIGTERM again once it has shut down: end with SystemExit instead,
    # so the profile is written.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    profile = cProfile.Profile()
    profile.enable()
    try:
        uvloop.run(run())
    finally:
        profile.disable()
        profile.dump_stats(f"{profile_path}.{kind}")


# --- clients (run as ``python -m bench.fanout client URL COUNT TOKEN``) --------------------
#
# The clients share the server's two cores, and their CPU time is part of every until-all
# figure: an asyncio client of the websockets library spent ~100 µs per received frame
# (5,000 sockets a process: ~0.5 s per event before any server cost). This one is a bare
# asyncio protocol on uvloop that parses frames itself (a few µs a frame). It offers
# permessage-deflate as browsers do, and inflates when a server accepts it.


class _Socket(asyncio.Protocol):
    def __init__(self, fleet: _Fleet, index: int) -> None:
        self.fleet = fleet
        self.index = index
        self.buffer = bytearray()
        self.open = False
        self.inflate: Any = None
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is not one
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {self.fleet.path} HTTP/1.1\r\nHost: {self.fleet.host}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: graphql-transport-ws\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        )
        transport.write(request.encode())

    def send(self, text: str) -> None:
        self.send_frame(0x1, text.encode())

    def send_frame(self, opcode: int, data: bytes) -> None:
        payload = bytearray(data)
        mask = os.urandom(4)
        for i in range(len(payload)):
            payload[i] ^= mask[i % 4]
        n, first = len(payload), 0x80 | opcode
        header = bytes([first, 0x80 | n]) if n < 126 else bytes([first, 0xFE]) + n.to_bytes(2)
        assert self.transport is not None
        self.transport.write(header + mask + payload)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.open:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).lower()
            del buffer[: end + 4]
            if not head.startswith(b"http/1.1 101"):
                raise RuntimeError(f"handshake refused: {head[:80]!r}")
            if b"permessage-deflate" in head:
                self.inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            self.open = True
            self.fleet.opened(self)
        while len(buffer) >= 2:
            first, length = buffer[0], buffer[1] & 0x7F
            start = 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, start = int.from_bytes(buffer[2:4]), 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, start = int.from_bytes(buffer[2:10]), 10
            if len(buffer) < start + length:
                return
            payload = bytes(buffer[start : start + length])
            del buffer[: start + length]
            opcode = first & 0x0F
            if first & 0x40 and self.inflate is not None:  # RSV1: a compressed message
                payload = self.inflate.decompress(payload + b"\x00\x00\xff\xff")
            if opcode == 1:
                self.fleet.received(self, payload)
            elif opcode == 9:  # uvicorn pings every 20 s and closes the socket without a pong
                self.send_frame(0xA, payload)
            elif opcode == 8:
                assert self.transport is not None
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _Fleet:
    def __init__(self, url: str, count: int, token: str) -> None:
        rest = url.removeprefix("ws://")
        self.host, _, path = rest.partition("/")
        self.path = "/" + path
        self.count = count
        self.token = token
        self.received_by = [0] * count
        self.reached: dict[int, int] = {}  # event number -> sockets that have it

    def opened(self, socket: _Socket) -> None:
        if self.token:
            init = {"type": "connection_init", "payload": {"authorization": f"Bearer {self.token}"}}
            socket.send(json.dumps(init))
        else:
            socket.send("{}")

    def received(self, socket: _Socket, payload: bytes) -> None:
        if b'"connection_ack"' in payload:
            subscribe = {"id": "1", "type": "subscribe", "payload": {"query": DOCUMENT}}
            socket.send(json.dumps(subscribe))
        elif b'"next"' in payload:
            self.received_by[socket.index] += 1
            k = self.received_by[socket.index]
            self.reached[k] = self.reached.get(k, 0) + 1
            if self.reached[k] == self.count:
                del self.reached[k]
                print(json.dumps({"events": k, "at": time.monotonic()}), flush=True)


def _client(url: str, count: int, token: str) -> None:
    import uvloop

    async def run() -> None:
        fleet = _Fleet(url, count, token)
        host, _, port = fleet.host.partition(":")
        loop = asyncio.get_running_loop()
        sockets: list[_Socket] = []
        for i in range(count):
            _, socket = await loop.create_connection(
                lambda i=i: _Socket(fleet, i),  # type: ignore[misc]
                host,
                int(port),
            )
            sockets.append(socket)
            if i % 50 == 49:
                await asyncio.sleep(0.05)  # don't overflow the accept backlog
        print(json.dumps({"connected": count}), flush=True)
        await asyncio.gather(*(s.closed for s in sockets))

    uvloop.run(run())


# --- the driver ---------------------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class _Proc:
    def __init__(self, *args: str, module: str = "bench.fanout") -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(["src", "."])}
        self.proc = subprocess.Popen(  # noqa: S603  (this interpreter, our own module)
            [sys.executable, "-m", module, *args],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def pump(self) -> None:
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.to_thread(self.proc.stdout.readline)
            if not line:
                return
            await self.lines.put(json.loads(line))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def _measure(kind: str, subscribers: int, events: int, soak_minutes: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server = _Proc("serve", kind, tmp)
        pumps = [asyncio.create_task(server.pump())]
        clients: list[_Proc] = []
        try:
            hello = await asyncio.wait_for(server.lines.get(), 60)
            base = f"http://127.0.0.1:{hello['port']}"
            ws_url = f"ws://127.0.0.1:{hello['port']}/graphql"
            async with httpx.AsyncClient(base_url=base, timeout=120) as http:
                objects_before = (await http.get("/live?objects=1")).json()["objects"]
                await asyncio.sleep(1)
                idle_before = _rss_kib(server.proc.pid)
                share = subscribers // CLIENT_PROCESSES
                for n in range(CLIENT_PROCESSES):
                    count = share + (subscribers % CLIENT_PROCESSES if n == 0 else 0)
                    client = _Proc("client", ws_url, str(count), hello["token"])
                    clients.append(client)
                    pumps.append(asyncio.create_task(client.pump()))
                for client in clients:
                    await asyncio.wait_for(client.lines.get(), 600)
                while (await http.get("/live")).json()["live"] < subscribers:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
                await asyncio.sleep(1)
                idle_after = _rss_kib(server.proc.pid)
                objects_after = (await http.get("/live?objects=1")).json()["objects"]
                gc_before = (await http.get("/live")).json()["gc"]

                async def arrival(n: int) -> float:
                    """When the last client process had event ``n`` on every socket."""
                    arrived = []
                    for client in clients:
                        while True:
                            line = await asyncio.wait_for(client.lines.get(), 120)
                            if line.get("events", 0) >= n:
                                arrived.append(line["at"])
                                break
                    return max(arrived)

                latencies: list[float] = []
                for n in range(1, events + 1):
                    sent = time.monotonic()
                    await http.post("/publish", json={"n": n})
                    latencies.append(await arrival(n) - sent)
                gc_after = (await http.get("/live")).json()["gc"]
                # Soak: governed mutations (registerProvider over /graphql: audit row, outbox,
                # relay, bus, hub, cohort, sockets), ~10 a second, each waited for at every
                # subscriber; the server's RSS after each.
                rss: list[tuple[float, int]] = []
                start = time.monotonic()
                n = events
                headers = {"Authorization": f"Bearer {hello['token']}"}
                while soak_minutes and time.monotonic() - start < soak_minutes * 60:
                    n += 1
                    sent = time.monotonic()
                    body = (
                        await http.post(
                            "/graphql",
                            json={
                                "query": REGISTER_PROVIDER,
                                "variables": {"input": provider_input(f"soak-{n}")},
                            },
                            headers=headers,
                        )
                    ).json()
                    if "errors" in body or body["data"]["registerProvider"]["userErrors"]:
                        raise RuntimeError(f"soak mutation {n} failed: {body}")
                    await arrival(n)
                    rss.append((time.monotonic() - start, _rss_kib(server.proc.pid)))
                    await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - sent)))
        finally:
            for client in clients:
                client.stop()
            server.stop()
            for pump in pumps:
                pump.cancel()
    latencies.sort()
    return {
        "median": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "per_subscriber_kib": (idle_after - idle_before) / subscribers,
        "per_subscriber_objects": (objects_after - objects_before) / subscribers,
        "gc_pauses": gc_after[len(gc_before) :],  # full collections while events flowed
        "rss": rss,
        "events": events,
        "mutations": n - events,
    }


def _window(rss: list[tuple[float, int]], minutes: float) -> dict[str, float]:
    """RSS (MB) over the last ``minutes`` of the soak: at its start and end, the growth
    between them, and the least-squares slope (MB/min) of every sample in it."""
    end = rss[-1][0]
    window = [(t, kib) for t, kib in rss if t >= end - minutes * 60]
    xs = [t / 60 for t, _ in window]
    ys = [kib / 1024 for _, kib in window]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = (
        sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
        if spread
        else 0.0
    )
    return {
        "first": rss[0][1] / 1024,
        "start": ys[0],
        "end": ys[-1],
        "growth": ys[-1] - ys[0],
        "peak": max(ys),
        "slope": slope,
        "minutes": xs[-1] - xs[0],
    }


async def run(subscribers: int, events: int, soak_minutes: float) -> None:
    raw = await _measure("raw", subscribers, events, 0)
    studio = await _measure("studio", subscribers, events, soak_minutes)
    print(f"fan-out, {subscribers} subscribers, {studio['events']} events (shared machine)")
    for name, key in (("until-all median", "median"), ("until-all p99", "p99")):
        print(
            f"  {name:18} studio {studio[key] * 1e3:8.1f} ms  raw {raw[key] * 1e3:8.1f} ms  "
            f"({studio[key] / raw[key]:.2f}x raw)"
        )
    print(
        f"  RSS per idle sub   studio {studio['per_subscriber_kib']:8.1f} KiB "
        f"raw {raw['per_subscriber_kib']:8.1f} KiB "
        f"({studio['per_subscriber_kib'] / max(raw['per_subscriber_kib'], 0.1):.2f}x raw)"
    )
    print(
        f"  GC-tracked objects studio {studio['per_subscriber_objects']:8.1f} /sub    "
        f"raw {raw['per_subscriber_objects']:8.1f} /sub"
    )
    for name, result in (("studio", studio), ("raw", raw)):
        pauses = result["gc_pauses"]
        print(
            f"  full GCs in events {name:6} {len(pauses):4d}, longest "
            f"{max(pauses, default=0) * 1e3:6.1f} ms"
        )
    if soak_minutes and studio["rss"]:
        half = _window(studio["rss"], soak_minutes / 2)
        print(
            f"  soak: {studio['mutations']} registerProvider mutations in {soak_minutes:g} min "
            f"({studio['mutations'] / (soak_minutes * 60):.1f}/s), each at all {subscribers} "
            f"subscribers; server RSS {half['first']:.1f} MB after the first"
        )
        print(
            f"  RSS growth over the last {half['minutes']:.1f} min: {half['growth']:+.1f} MB "
            f"({half['start']:.1f} -> {half['end']:.1f} MB, peak {half['peak']:.1f}; slope "
            f"{half['slope']:+.2f} MB/min) ({'PASS' if half['growth'] <= 10 else 'FAIL'}: "
            "<= 10 MB)"
        )


def main(argv: list[str]) -> None:
    if argv and argv[0] == "serve":
        _serve(argv[1], argv[2])
    elif argv and argv[0] == "client":
        _client(argv[1], int(argv[2]), argv[3])
    elif {"--slow-consumer", "--redis-kill"} & set(argv):
        from bench import fanout_faults

        fanout_faults.main(argv)
    else:
        parser = argparse.ArgumentParser()
        parser.add_argument("--subscribers", type=int, default=1000)
        parser.add_argument("--events", type=int, default=30)
        parser.add_argument("--soak", type=float, default=0.0, help="minutes")
        args = parser.parse_args(argv)
        asyncio.run(run(args.subscribers, args.events, args.soak))


if __name__ == "__main__":
    main(sys.argv[1:])
