"""The HTTP server: uvicorn with the gateway's limits on slow or oversized requests.

uvicorn closes idle keep-alive connections (`timeout_keep_alive`) but has no deadline for a
request's head or body: a client trickling a header or a body a byte at a time keeps its
connection (and, for a webhook, a body slot) forever. `GuardedHttpProtocol` adds them:

- the request head (request line and headers) must be complete within
  `http_header_timeout_seconds` of the connection or of the previous answer, and at most
  `http_max_header_bytes` long (else 431);
- the body must then arrive whole within `http_body_timeout_seconds`.

A connection past a deadline gets 408 (when nothing was answered yet) and is closed.

Each request's scope also carries its `Connection` (`CONNECTION`), for the live stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .settings import GatewaySettings

CONNECTION = "polar.connection"  # scope key: the request's Connection


class Connection:
    """What a long answer (the live stream, routes/stream.py) needs of its connection beyond
    ASGI: closing it at once (a client stuck in a send is dropped, not waited for: the app
    alone can only wait), and hearing that it is lost without a task per answer waiting on
    receive()."""

    __slots__ = ("_transport", "on_lost")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.on_lost: Callable[[], None] | None = None  # called once, when it is lost

    def abort(self) -> None:
        self._transport.abort()

    @property
    def lost(self) -> bool:
        return self._transport.is_closing()


class GuardedHttpProtocol(HttpToolsProtocol):
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_header_bytes: int = 32 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._in_head = True

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _refuse(self, status: int) -> None:
        if self.transport.is_closing():
            return
        # Answer unless a response is under way (or done: body phase of an answered request).
        if self._in_head or not self.cycle.response_started:
            self.transport.write(
                STATUS_LINE[status] + b"content-length: 0\r\nconnection: close\r\n\r\n"
            )
        if not self._in_head and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the app's receive() answers http.disconnect
            self.cycle.message_event.set()
        self.transport.close()

    def _too_slow(self) -> None:
        self._deadline = None
        self._refuse(408)

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_header_bytes:
            self._refuse(431)

    # asyncio.Protocol and httptools callbacks ---------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.connection = Connection(transport)
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
        on_lost, self.connection.on_lost = self.connection.on_lost, None
        if on_lost is not None:
            on_lost()

    # Once refused (transport closing), what the parser still finds in the buffer is ignored:
    # no request starts on a refused connection.

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        self._in_head = True
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.transport.is_closing():
            return
        self.scope[CONNECTION] = self.connection  # type: ignore[literal-required]
        self._in_head = False
        self._arm(self.body_timeout)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.transport.is_closing():
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            super().on_message_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # a queued request already has its head
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self._arm(self.header_timeout)


def http_protocol(settings: GatewaySettings) -> type[GuardedHttpProtocol]:
    return type(
        "GatewayHttpProtocol",
        (GuardedHttpProtocol,),
        {
            "header_timeout": settings.http_header_timeout_seconds,
            "body_timeout": settings.http_body_timeout_seconds,
            "max_header_bytes": settings.http_max_header_bytes,
        },
    )


def config(
    app: Any, settings: GatewaySettings, *, host: str | None = None, port: int | None = None
) -> uvicorn.Config:
    """The uvicorn configuration of `python -m polar_gateway` (and of the tests)."""
    return uvicorn.Config(
        app,
        host=settings.gateway_http_host if host is None else host,
        port=settings.gateway_http_port if port is None else port,
        http=http_protocol(settings),
        log_config=None,  # structlog owns the root logger (configure_logging)
        access_log=False,  # the middleware logs failures and counts everything
        # X-Forwarded-For only from the configured proxies (the rate limits' client address).
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        server_header=False,
        timeout_keep_alive=settings.http_keep_alive_seconds,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) or None,
        lifespan="on",
    )
