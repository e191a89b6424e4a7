"""Live fan-out under faults (issue #14's must-shows), figures as ratios and percentages.

``python -m bench --fanout --slow-consumer [--healthy 10] [--rate 200] [--seconds 60]``
    The bench's studio server (``bench.fanout``: SQLite, memory bus, one cohort), ``healthy``
    subscribers that read everything and one that never reads its socket (receive buffer
    shrunk to ``--rcvbuf`` bytes, reading paused once subscribed, so the kernel buffers and
    then the server's fill). The server publishes ``rate`` events a second for ``seconds``.
    Shown: each healthy subscriber's events received vs emitted (at the end of the emission
    and after), its lag in events and in time, and whether any was dropped; the slow one
    dropped with ``SLOW_CONSUMER`` (the server's drop count, and the frames the stalled
    client finds in its buffer once it reads again).

``python -m bench --fanout --redis-kill [--subscribers 1000] [--outage-events 10]``
    A private ``redis-server`` on a free port (never the shared one), a fresh PostgreSQL
    database, two ``studio-integrations serve`` processes pointed at both as production runs
    them, half the subscribers on each (``auditEvents``). Redis is SIGKILLed, events are
    emitted by governed mutations (``registerProvider``, so they wait in the outbox) on both
    replicas, redis-server is started again on the same port, and the time from its first
    PONG until every subscriber has every outage event is measured, next to the same run's
    live emit-to-everyone latency before the outage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.fanout import REGISTER_PROVIDER, TENANT, _Fleet, _Proc, _Socket, provider_input

MODULE = "bench.fanout_faults"


# --- clients (run as ``python -m bench.fanout_faults watch|stall ...``) -------------------


class _WatchFleet(_Fleet):
    """Counts every socket's events (and duplicates, by event id), keeps a histogram of
    delivery lags (publish time in the event's data, where the server put it), notes any
    error frame (``SLOW_CONSUMER``) and ``complete``, and prints its counts every 0.2 s."""

    def __init__(self, url: str, count: int, token: str) -> None:
        super().__init__(url, count, token)
        self.seen: list[set[str]] = [set() for _ in range(count)]
        self.duplicates = 0
        self.errors: Counter[str] = Counter()
        self.completed = 0
        self.lag_ms: Counter[int] = Counter()  # 1 ms buckets

    def received(self, socket: _Socket, payload: bytes) -> None:
        if b'"next"' in payload:
            message = json.loads(payload)
            body = message.get("payload") or {}
            if body.get("errors"):
                for error in body["errors"]:
                    self.errors[(error.get("extensions") or {}).get("code", "?")] += 1
                return
            event = (body.get("data") or {}).get("auditEvents") or {}
            if event.get("id") in self.seen[socket.index]:
                self.duplicates += 1
                return
            self.seen[socket.index].add(event.get("id"))
            sent = (event.get("data") or {}).get("t")
            if isinstance(sent, float):
                self.lag_ms[int((time.monotonic() - sent) * 1000)] += 1
        elif b'"complete"' in payload:
            self.completed += 1
            return
        super().received(socket, payload)

    def report(self) -> dict[str, Any]:
        return {
            "counts": self.received_by,
            "duplicates": self.duplicates,
            "errors": dict(self.errors),
            "completed": self.completed,
            "lag_ms": {str(k): v for k, v in self.lag_ms.items()},
            "at": time.monotonic(),
        }


def _watch(url: str, count: int, token: str) -> None:
    import uvloop

    async def run() -> None:
        fleet = _WatchFleet(url, count, token)
        host, _, port = fleet.host.partition(":")
        loop = asyncio.get_running_loop()
        sockets = []
        for i in range(count):
            _, sock = await loop.create_connection(
                lambda i=i: _Socket(fleet, i),  # type: ignore[misc]
                host,
                int(port),
            )
            sockets.append(sock)
            if i % 50 == 49:
                await asyncio.sleep(0.05)
        print(json.dumps({"connected": count}), flush=True)
        while True:
            await asyncio.sleep(0.2)
            print(json.dumps(fleet.report()), flush=True)

    uvloop.run(run())


class _StallFleet(_WatchFleet):
    """One socket that stops reading as soon as it has subscribed (until SIGUSR1)."""

    def received(self, socket: _Socket, payload: bytes) -> None:
        super().received(socket, payload)
        if b'"connection_ack"' in payload and not self.resumed:
            assert socket.transport is not None
            socket.transport.pause_reading()
            port = socket.transport.get_extra_info("sockname")[1]
            print(json.dumps({"stalled": port, "at": time.monotonic()}), flush=True)

    resumed = False


def _stall(url: str, token: str, rcvbuf: int) -> None:
    import uvloop

    async def run() -> None:
        fleet = _StallFleet(url, 1, token)
        host, _, port = fleet.host.partition(":")
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect
        sock.connect((host, int(port)))
        sock.setblocking(False)
        _, stalled = await loop.create_connection(lambda: _Socket(fleet, 0), sock=sock)
        resume = asyncio.Event()
        loop.add_signal_handler(signal.SIGUSR1, resume.set)
        await resume.wait()
        fleet.resumed = True
        assert stalled.transport is not None
        stalled.transport.resume_reading()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(stalled.closed), 5)
        print(json.dumps({**fleet.report(), "closed": stalled.closed.done()}), flush=True)

    uvloop.run(run())


# --- the driver ---------------------------------------------------------------------------


def _percentile_ms(histogram: dict[str, int], q: float) -> float:
    items = sorted((int(k), v) for k, v in histogram.items())
    total = sum(v for _, v in items)
    if not total:
        return float("nan")
    seen = 0
    for ms, count in items:
        seen += count
        if seen >= q * total:
            return float(ms)
    return float(items[-1][0])


async def _latest(proc: _Proc, key: str, after: float = 0.0) -> dict[str, Any]:
    """The first line with ``key`` printed at or after ``after`` (monotonic)."""
    while True:
        line = await asyncio.wait_for(proc.lines.get(), 120)
        if key in line and line.get("at", 0.0) >= after:
            return line


async def slow_consumer(healthy: int, rate: float, seconds: float, rcvbuf: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = _Proc("serve", "studio", tmp)
        pumps = [asyncio.create_task(server.pump())]
        procs: list[_Proc] = []
        try:
            hello = await asyncio.wait_for(server.lines.get(), 60)
            base = f"http://127.0.0.1:{hello['port']}"
            ws_url = f"ws://127.0.0.1:{hello['port']}/graphql"
            async with httpx.AsyncClient(base_url=base, timeout=seconds * 3 + 60) as http:
                watch = _Proc("watch", ws_url, str(healthy), hello["token"], module=MODULE)
                stall = _Proc("stall", ws_url, hello["token"], str(rcvbuf), module=MODULE)
                procs += [watch, stall]
                pumps += [asyncio.create_task(p.pump()) for p in procs]
                await _latest(watch, "connected")
                stalled_port = (await _latest(stall, "stalled"))["stalled"]
                while (await http.get("/live")).json()["live"] < healthy + 1:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
                cpu_before = _cpu_seconds(server.proc.pid)
                started = time.monotonic()
                pumping = asyncio.create_task(
                    http.post("/pump", json={"rate": rate, "seconds": seconds})
                )
                # Until the server drops the stalled subscriber: its kernel's queue for it,
                # then the stalled client reads again, to find why it was dropped.
                kernel, dropped_after = "never sampled", None
                while not pumping.done():
                    await asyncio.wait({pumping}, timeout=0.25)
                    if dropped_after is None:
                        sample = _kernel_queue(hello["port"], stalled_port)
                        if (await http.get("/live")).json()["dropped"]:
                            dropped_after = time.monotonic() - started
                            stall.proc.send_signal(signal.SIGUSR1)
                        else:
                            kernel = sample
                pumped = pumping.result().json()
                cpu = _cpu_seconds(server.proc.pid) - cpu_before
                at_end = await _latest(watch, "counts", after=pumped["end"])
                settled = at_end
                deadline = time.monotonic() + 15
                while min(settled["counts"]) < pumped["emitted"] and time.monotonic() < deadline:
                    settled = await _latest(watch, "counts")
                live = (await http.get("/live")).json()
                if dropped_after is None:
                    stall.proc.send_signal(signal.SIGUSR1)
                stalled = await _latest(stall, "closed")
        finally:
            for proc in procs:
                proc.stop()
            server.stop()
            for pump in pumps:
                pump.cancel()
    emitted = pumped["emitted"]
    behind_end = [emitted - c for c in at_end["counts"]]
    print(
        f"slow consumer: {healthy} healthy subscribers + 1 that never reads (SO_RCVBUF "
        f"{rcvbuf} B), {emitted} events in {pumped['seconds']:.1f} s "
        f"({emitted / pumped['seconds']:.0f}/s, asked {rate:g}/s; server CPU "
        f"{cpu / pumped['seconds'] * 100:.0f} % of one core)"
    )
    print(
        f"  healthy, when the last event was published: received "
        f"{min(at_end['counts'])}..{max(at_end['counts'])} of {emitted} "
        f"(at least {min(at_end['counts']) / emitted * 100:.2f} %); "
        f"behind by at most {max(behind_end)} events ({max(behind_end) / emitted * 100:.2f} %)"
    )
    print(
        f"  healthy, after: received {min(settled['counts'])}..{max(settled['counts'])} of "
        f"{emitted} ({min(settled['counts']) / emitted * 100:.2f} %), duplicates "
        f"{settled['duplicates']}, error frames {settled['errors'] or 'none'}, "
        f"completed {settled['completed']}"
    )
    lag = settled["lag_ms"]
    print(
        f"  healthy delivery lag (publish -> receipt): median {_percentile_ms(lag, 0.5):.0f} ms, "
        f"p99 {_percentile_ms(lag, 0.99):.0f} ms, max {_percentile_ms(lag, 1.0):.0f} ms "
        f"(p99 = {_percentile_ms(lag, 0.99) / (1000 / rate):.1f} publish intervals)"
    )
    when = (
        f"after {dropped_after:.1f} s of publishing (~{dropped_after * rate:.0f} events)"
        if dropped_after is not None
        else "never, while publishing"
    )
    print(
        f"  server: dropped {live['dropped']} subscriber(s), {live['live']} of "
        f"{healthy + 1} live at the end; the stalled one dropped {when}; the server's kernel "
        f"for it just before: {kernel}"
    )
    print(
        f"  stalled client, reading again once dropped: {stalled['counts'][0]} events "
        f"({stalled['counts'][0] / emitted * 100:.1f} %) that had reached its socket, then "
        f"error frames {stalled['errors'] or 'none'}, complete x{stalled['completed']}, "
        f"socket closed: {stalled['closed']}"
    )
    ok = (
        min(settled["counts"]) == emitted
        and max(behind_end) <= emitted * 0.01
        and not settled["errors"]
        and live["dropped"] == 1
        and stalled["errors"].get("SLOW_CONSUMER") == 1
    )
    print(
        f"  {'PASS' if ok else 'FAIL'}: no healthy subscriber dropped or > 1 % behind, "
        "the slow one dropped"
    )


def _kernel_queue(server_port: int, client_port: int) -> str:
    """The server's side of the stalled connection as ``ss`` sees it: bytes the kernel holds
    unsent (Send-Q) and its send buffer (``tb``)."""
    out = subprocess.run(  # noqa: S603
        ["ss", "-tnmH", "src", f"127.0.0.1:{server_port}", "dst", f"127.0.0.1:{client_port}"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if len(out) < 3:
        return "connection gone"
    buffer = next((f for f in out if f.startswith("skmem:")), "")
    size = next((f for f in buffer.split(",") if f.startswith("tb")), "tb?")
    return f"Send-Q {int(out[2]) / 1024:.0f} KiB, send buffer {int(size[2:]) / 1024:.0f} KiB"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- Redis killed under two replicas -------------------------------------------------------


async def _first_pong(port: int) -> float:
    """Polls PING every 10 ms; the monotonic time of the first PONG."""
    while True:
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(b"PING\r\n")
                await writer.drain()
                if (await asyncio.wait_for(reader.readline(), 1)).startswith(b"+PONG"):
                    return time.monotonic()
            finally:
                writer.close()
        await asyncio.sleep(0.01)


class _Replica:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        from tests.support.backends import free_port

        self.port = free_port()
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "studio_integrations.cli", "serve"],
            env={**env, "STUDIO_PORT": str(self.port)},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/graphql"

    async def ready(self, http: httpx.AsyncClient) -> None:
        for _ in range(600):
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(f"{self.base}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"replica on {self.port} never became ready")

    async def live(self, http: httpx.AsyncClient) -> int:
        text = (await http.get(f"{self.base}/metrics")).text
        for line in text.splitlines():
            if line.startswith("studio_live_subscribers "):
                return int(float(line.split()[1]))
        return 0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


async def _all_reached(watchers: list[_Proc], events: int) -> float:
    """The monotonic time the last watcher process had ``events`` on every socket."""
    times = []
    for watcher in watchers:
        while True:
            line = await asyncio.wait_for(watcher.lines.get(), 120)
            if line.get("events", 0) >= events:
                times.append(line["at"])
                break
    return max(times)


async def redis_kill(
    subscribers: int, outage_events: int, warmup: int, outage_seconds: float
) -> None:
    from tests.support.redis_server import PrivateRedis

    from bench.dispatcher import database
    from studio_integrations.auth.scopes import ALL_SCOPES
    from studio_integrations.auth.tokens import mint_dev_token
    from studio_integrations.settings import Settings

    key = secrets.token_urlsafe(32)
    token = mint_dev_token(
        Settings(dev_signing_key=key), tenant=TENANT, subject="bench", scopes=ALL_SCOPES
    )
    headers = {"Authorization": f"Bearer {token}"}
    with tempfile.TemporaryDirectory() as tmp:
        redis = PrivateRedis(Path(tmp))
        redis.start()
        await asyncio.wait_for(_first_pong(redis.port), 30)
        replicas: list[_Replica] = []
        watchers: list[_Proc] = []
        pumps: list[asyncio.Task[None]] = []
        async with database("postgres") as db_url, httpx.AsyncClient(timeout=60) as http:
            try:
                env = {
                    **os.environ,
                    "PYTHONPATH": os.pathsep.join(["src", "."]),
                    "STUDIO_DATABASE_URL": db_url,
                    "STUDIO_BROADCAST_URL": redis.url,
                    "STUDIO_DEV_SIGNING_KEY": key,
                    "STUDIO_STATE_DIR": tmp,
                    "STUDIO_MAX_SUBSCRIPTIONS_PER_TENANT": str(subscribers * 2),
                    "STUDIO_WS_KEEP_ALIVE_SECONDS": "3600",
                    "STUDIO_LOG_LEVEL": "WARNING",
                }
                replicas = [_Replica(env, Path(tmp) / f"replica{i}.log") for i in range(2)]
                for replica in replicas:
                    await replica.ready(http)
                share = subscribers // len(replicas)
                for replica in replicas:
                    watcher = _Proc("watch", replica.ws_url, str(share), token, module=MODULE)
                    watchers.append(watcher)
                    pumps.append(asyncio.create_task(watcher.pump()))
                for watcher in watchers:
                    await _latest(watcher, "connected")
                for replica in replicas:
                    while await replica.live(http) < share:  # noqa: ASYNC110
                        await asyncio.sleep(0.2)

                async def mutate(n: int) -> None:
                    replica = replicas[n % len(replicas)]
                    body = (
                        await http.post(
                            f"{replica.base}/graphql",
                            json={
                                "query": REGISTER_PROVIDER,
                                "variables": {"input": provider_input(f"bench-{n}")},
                            },
                            headers=headers,
                        )
                    ).json()
                    result = (body.get("data") or {}).get("registerProvider") or {}
                    if "errors" in body or result.get("userErrors"):
                        raise RuntimeError(f"mutation {n} failed: {body}")

                live_latency = []
                for n in range(1, warmup + 1):
                    sent = time.monotonic()
                    await mutate(n)
                    live_latency.append(await _all_reached(watchers, n) - sent)
                redis.kill()
                killed = time.monotonic()
                await asyncio.sleep(1)
                for n in range(warmup + 1, warmup + outage_events + 1):
                    await mutate(n)
                await asyncio.sleep(max(0.0, outage_seconds - (time.monotonic() - killed)))
                during = [await _latest(w, "counts", after=time.monotonic()) for w in watchers]
                redis.start()
                up = await asyncio.wait_for(_first_pong(redis.port), 30)
                total = warmup + outage_events
                first = await _all_reached(watchers, warmup + 1)
                reached = await _all_reached(watchers, total)
                await asyncio.sleep(2)
                after = [await _latest(w, "counts", after=time.monotonic()) for w in watchers]
            finally:
                for watcher in watchers:
                    watcher.stop()
                for replica in replicas:
                    replica.stop()
                for pump in pumps:
                    pump.cancel()
                redis.stop()
            logs = "".join((Path(tmp) / f"replica{i}.log").read_text() for i in range(2))
    recovery = reached - up
    live = statistics.median(live_latency)
    counts = [c for line in after for c in line["counts"]]
    before_up = [c for line in during for c in line["counts"]]
    duplicates = sum(line["duplicates"] for line in after)
    print(
        f"redis killed: {subscribers} subscribers on 2 replicas (PostgreSQL, private Redis), "
        f"{outage_events} events emitted by mutations during a {outage_seconds:g} s outage"
    )
    print(
        f"  before Redis answered: subscribers had {min(before_up)}..{max(before_up)} events "
        f"({warmup} from before the outage)"
    )
    print(
        f"  Redis answering -> every outage event at every subscriber: {recovery:.2f} s "
        f"({'PASS' if recovery <= 5 and min(counts) == total else 'FAIL'}: <= 5 s); "
        f"live emit -> everyone before the outage: median {live * 1e3:.0f} ms "
        f"(recovery = {recovery / live:.1f}x)"
    )
    print(f"  Redis answering -> the first outage event at every subscriber: {first - up:.2f} s")
    print(
        f"  after: every subscriber has {min(counts)}..{max(counts)} of {total} events, "
        f"duplicates {duplicates}, error frames "
        f"{sum((Counter(line['errors']) for line in after), Counter()) or 'none'}"
    )
    reconnects = logs.count("event bus reconnected")
    print(f"  replica logs: 'event bus reconnected' x{reconnects}")


def main(argv: list[str]) -> None:
    if argv and argv[0] == "watch":
        _watch(argv[1], int(argv[2]), argv[3])
    elif argv and argv[0] == "stall":
        _stall(argv[1], argv[2], int(argv[3]))
    else:
        parser = argparse.ArgumentParser()
        mode = parser.add_mutually_exclusive_group(required=True)
        mode.add_argument("--slow-consumer", action="store_true")
        mode.add_argument("--redis-kill", action="store_true")
        parser.add_argument("--healthy", type=int, default=10)
        parser.add_argument("--rate", type=float, default=200)
        parser.add_argument("--seconds", type=float, default=60)
        parser.add_argument("--rcvbuf", type=int, default=4096)
        parser.add_argument("--subscribers", type=int, default=1000)
        parser.add_argument("--outage-events", type=int, default=10)
        parser.add_argument("--warmup", type=int, default=3)
        parser.add_argument("--outage-seconds", type=float, default=5)
        args = parser.parse_args(argv)
        if args.slow_consumer:
            asyncio.run(slow_consumer(args.healthy, args.rate, args.seconds, args.rcvbuf))
        else:
            asyncio.run(
                redis_kill(args.subscribers, args.outage_events, args.warmup, args.outage_seconds)
            )


if __name__ == "__main__":
    main(sys.argv[1:])
