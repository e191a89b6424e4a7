"""HTTPS on loopback for fakes: a throwaway CA (``trustme``) and a uvicorn runner.

Clients trust the fake by being given ``TlsFiles.ca`` (``connection_verify=`` for the Azure
SDK, ``SSL_CERT_FILE`` for a subprocess); nothing disables verification.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import trustme
from starlette.types import ASGIApp

from tests.support.live import serve


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the CA certificate, PEM: what a client trusts
    cert: Path  # the server's certificate chain, PEM
    key: Path  # the server's private key, PEM
    hostnames: tuple[str, ...]


def make_tls(directory: Path, hostnames: Sequence[str] = ("127.0.0.1", "localhost")) -> TlsFiles:
    """A fresh CA and a server certificate for ``hostnames``, written under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    issued = ca.issue_cert(*hostnames)
    files = TlsFiles(
        ca=directory / "ca.pem",
        cert=directory / "server-chain.pem",
        key=directory / "server-key.pem",
        hostnames=tuple(hostnames),
    )
    ca.cert_pem.write_to_path(str(files.ca))
    for i, blob in enumerate(issued.cert_chain_pems):
        blob.write_to_path(str(files.cert), append=i > 0)
    issued.private_key_pem.write_to_path(str(files.key))
    return files


@contextlib.asynccontextmanager
async def serve_https(app: ASGIApp, tls: TlsFiles, host: str = "127.0.0.1") -> AsyncIterator[int]:
    """Serve ``app`` over HTTPS on a free port of ``host`` in this event loop; yields the port."""
    options = {"lifespan": "off", "ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key)}
    async with serve(app, host, **options) as live:
        yield live.port
