"""Request id, access metrics and logging, and the security headers of every request (plain
ASGI: no buffering, so the live stream and large webhook bodies pass straight through)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import structlog
from polar_kit import tracing
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import REFRESH, session_cookie
from .context import REQUEST_ID_HEADER, accept_request_id, request_id_var
from .metrics import HTTP_REQUESTS, HTTP_SECONDS

if TYPE_CHECKING:
    from .state import Gateway

log = structlog.get_logger("polar_gateway.access")

_HEADER = REQUEST_ID_HEADER.encode()
_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})


def _route(scope: Scope) -> str:
    # The route template, not the path: bounded label values for Prometheus.
    if "polar.route" in scope:  # answered by a fast path (webhooks.WebhookIngress)
        return str(scope["polar.route"])
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def _metrics(method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    # labels() takes a lock and builds a key on every call; the set of routes is bounded.
    key = (method, route, status)
    found = _children.get(key)
    if found is None:
        found = _children[key] = (
            HTTP_REQUESTS.labels(method, route, str(status)),
            HTTP_SECONDS.labels(method, route),
        )
    return found


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for key, value in scope["headers"]:
            if key == _HEADER:
                incoming = value.decode("latin-1")
                break
        request_id = accept_request_id(incoming)
        tracing.annotate(request_id=request_id)
        token = request_id_var.set(request_id)
        start = time.perf_counter()
        status = 500
        streaming = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, streaming
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((_HEADER, request_id.encode()))
                message = {**message, "headers": headers}
                for key, value in headers:
                    if key == b"content-type" and value.startswith(b"text/event-stream"):
                        streaming = True
            await send(message)

        # The live stream writes its events here, past the layers below: they only look at
        # the answer's start (routes/stream.py).
        scope["polar.send"] = send
        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            method, route = scope["method"], _route(scope)
            counter, histogram = _metrics(method, route, status)
            counter.inc()
            if not streaming:
                histogram.observe(elapsed)
            # One line per request (probes at debug: they come every few seconds).
            level = "warning" if status >= 500 else "debug" if route in _PROBES else "info"
            log.log(
                logging.getLevelName(level.upper()),
                "request",
                method=method,
                path=scope["path"],
                status=status,
                ms=round(elapsed * 1000, 1),
            )
            structlog.contextvars.reset_contextvars(**bound)
            request_id_var.reset(token)


class SecurityHeadersMiddleware:
    """Headers of every answer: `X-Content-Type-Options: nosniff`; `Strict-Transport-Security`
    when cookies are Secure (HTTPS deployments); `Cache-Control: no-store` on answers to
    requests that carry credentials (no shared or browser cache keeps a user's data); and the
    refreshed session cookie of a cookie session (auth.REFRESH), recorded as the session's
    last activity."""

    def __init__(self, app: ASGIApp, *, gateway_app: Any) -> None:
        self.app = app
        self.gateway_app = gateway_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        credentials = any(k in (b"authorization", b"cookie") for k, _ in scope["headers"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers.append((b"x-content-type-options", b"nosniff"))
                if self.gateway.settings.secure_cookies:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                if credentials and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                refreshed = scope.get(REFRESH)
                if refreshed is not None and not _sets_session_cookie(headers, self.gateway):
                    token, session = refreshed
                    headers.append(session_cookie(self.gateway, token))
                    try:
                        await self.gateway.sessions.record(session)
                    except Exception as exc:  # the cookie still works; the list lags
                        log.warning("could not record the session refresh", error=repr(exc))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.gateway_app.state.gateway
        return gateway


def _sets_session_cookie(headers: list[tuple[bytes, bytes]], gateway: Gateway) -> bool:
    # Sign-in and logout set (or clear) the cookie themselves.
    prefix = gateway.settings.session_cookie_name.encode() + b"="
    return any(k.lower() == b"set-cookie" and v.startswith(prefix) for k, v in headers)
