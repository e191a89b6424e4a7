"""The WebSocket protocol ``serve`` runs: uvicorn's sans-I/O one, with a bounded kernel send
buffer.

A live subscriber that stops reading is dropped with ``SLOW_CONSUMER`` once its backlog of
``SUBSCRIPTION_QUEUE_SIZE`` frames is full (``subscriptions.cohorts``, ``hub``), and the
backlog only starts when a send has to wait, i.e. when the kernel will take no more. Linux
grows a TCP socket's send buffer on its own up to ``net.ipv4.tcp_wmem``'s maximum (4 MiB by
default, reached at once on loopback): at 200 dashboard events a second of ~200 bytes that is
~100 s of events held for a client that reads nothing, so the documented drop never came;
uvicorn's keep-alive closed the socket first (1011 after ``ws_ping_interval`` +
``ws_ping_timeout``, 40 s), with no ``SLOW_CONSUMER`` and no drop counted (measured:
``python -m bench --fanout --slow-consumer``).

Setting ``SO_SNDBUF`` fixes the buffer (Linux doubles the value for its bookkeeping) and turns
off the autotuning, for WebSocket connections only (plain HTTP responses keep theirs). A
128 KiB window still carries 1 MiB/s at 100 ms round trip, far above a dashboard's stream.
"""

from __future__ import annotations

import contextlib
import socket
from asyncio import BaseTransport

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

# Bytes asked for; the kernel's buffer is twice this.
WS_SEND_BUFFER_BYTES = 64 * 1024


class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol; the upgraded socket's kernel send buffer is
    fixed at ``WS_SEND_BUFFER_BYTES`` so back-pressure reaches the subscription hub."""

    def connection_made(self, transport: BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, WS_SEND_BUFFER_BYTES)
        super().connection_made(transport)
