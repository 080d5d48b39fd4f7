"""Per-client rate limits: a token bucket per (kind, client IP), in memory, per replica.

- sign-in (authorize, callback): every request takes a token;
- writes (POST, PUT, PATCH, DELETE under /api/, webhooks and sign-in aside): every request;
- webhooks: only rejected deliveries (bad signature, too large, malformed) take a token, and
  a client with none left gets 429 before its body is read. GitHub's signed deliveries never
  count: a burst of real activity is never refused (GitHub does not retry on its own).

A bucket holds `per_minute` tokens and refills at `per_minute` per minute; an empty one
answers 429 with Retry-After (seconds until a token is back). The client IP is the socket's
peer, or X-Forwarded-For from a proxy listed in POLAR_FORWARDED_ALLOW_IPS (uvicorn). Limits
are per replica: N replicas let N times the rate through, which is fine for abuse control.
"""

from __future__ import annotations

import math
import re
import time
from collections import OrderedDict

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_body
from .settings import GatewaySettings

MAX_CLIENTS = 100_000  # buckets kept per kind (least recently used dropped)
# The buckets' clock, looked up at each use (a test holds it still, then moves it).
clock = time.monotonic

_SIGN_IN = re.compile(r"^/api/v\d+/integrations/github/(authorize|callback)$")
_WEBHOOK = re.compile(r"^/api/v\d+/integrations/github/webhook$")
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}


class TokenBuckets:
    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, client: str, now: float) -> float:
        tokens, at = self._buckets.get(client, (self.capacity, now))
        return min(self.capacity, tokens + (now - at) * self.rate)

    def retry_after(self, client: str) -> int:
        """0 when `client` has a token, else the seconds until it has one."""
        level = self._level(client, clock())
        return 0 if level >= 1 else max(1, math.ceil((1 - level) / self.rate))

    def take(self, client: str) -> None:
        now = clock()
        self._buckets[client] = (self._level(client, now) - 1, now)
        self._buckets.move_to_end(client)
        if len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, settings: GatewaySettings) -> None:
        self.app = app
        self.kinds: dict[str, TokenBuckets] = {
            kind: TokenBuckets(per_minute)
            for kind, per_minute in (
                ("sign_in", settings.rate_limit_sign_in_per_minute),
                ("write", settings.rate_limit_write_per_minute),
                ("webhook", settings.rate_limit_webhook_failures_per_minute),
            )
            if per_minute > 0
        }

    def _kind(self, scope: Scope) -> str | None:
        path, method = scope["path"], scope["method"]
        if _WEBHOOK.match(path):
            return "webhook"
        if _SIGN_IN.match(path):
            return "sign_in"
        if method in _WRITES and path.startswith("/api/"):
            return "write"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = self._kind(scope) if scope["type"] == "http" else None
        buckets = self.kinds.get(kind or "")
        if buckets is None:
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = buckets.retry_after(client)
        if wait:
            scope["polar.route"] = f"rate limited: {kind}"  # a bounded metrics label
            await _too_many(send, wait)
            return
        if kind != "webhook":
            buckets.take(client)
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _counting_failures(send, buckets, client))


def _counting_failures(send: Send, buckets: TokenBuckets, client: str) -> Send:
    # (A function of its own: a closure made in __call__ would give every request, a live
    # stream's for as long as it lasts, the cells of its variables.)
    async def count_failures(message: Message) -> None:
        if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
            buckets.take(client)
        await send(message)

    return count_failures


async def _too_many(send: Send, retry_after: int) -> None:
    body = orjson.dumps(
        error_body("resource_exhausted", "too many requests from this client, slow down")
    )
    headers = [
        (b"content-type", b"application/json"),
        (b"retry-after", str(retry_after).encode()),
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})
