"""Bounds on what unauthenticated clients can make the gateway hold.

Webhook bodies must be read whole before their signature can be checked, so at most
`webhook_max_concurrent_bodies` are being read and verified at once: a delivery waits up to
`webhook_publish_timeout_seconds` for a slot, then gets 503 with Retry-After (GitHub's
deliveries are small and quick, a slot is held for well under a millisecond; a flood of large
unsigned ones queues here instead of growing the heap: at most about slots x
webhook_max_body_bytes, plus the join of the body being verified). A
verified body (GitHub's) leaves its slot before it is published. Slow clients are cut off by
the HTTP server (server.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .errors import RETRY_AFTER_SECONDS, ApiError
from .settings import GatewaySettings


class Busy(ApiError):
    def __init__(self) -> None:
        super().__init__(
            503,
            "too many deliveries in progress, redeliver it shortly",
            code="unavailable",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )


class BodySlots:
    def __init__(self, settings: GatewaySettings) -> None:
        self._slots = asyncio.Semaphore(settings.webhook_max_concurrent_bodies)
        self._wait = settings.webhook_publish_timeout_seconds

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        if self._slots.locked():
            try:
                await asyncio.wait_for(self._slots.acquire(), self._wait)
            except TimeoutError:
                raise Busy() from None
        else:  # a free slot: taken at once, without wait_for's task and timer (issue 16)
            await self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()
