"""The gateway's NATS connection, made in the background.

The HTTP server starts at once even when NATS is down: webhook ingress then answers 503
(GitHub redelivers), the stream refuses new clients and /readyz says not ready, until the
connection (retried forever by polar_kit.nats.connect) is up and the streams exist.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from polar_kit.nats import connect, ensure_streams

from .errors import RETRY_AFTER_SECONDS, ApiError
from .settings import GatewaySettings

log = structlog.get_logger(__name__)

OnReady = Callable[[JetStreamContext], Awaitable[None]]


class NatsUnavailable(ApiError):
    def __init__(self, what: str = "the message bus is unavailable, try again shortly") -> None:
        super().__init__(
            503, what, code="unavailable", headers={"Retry-After": RETRY_AFTER_SECONDS}
        )


class Bus:
    def __init__(self, settings: GatewaySettings, on_ready: Sequence[OnReady] = ()) -> None:
        self.settings = settings
        self.nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._on_ready = list(on_ready)
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    def on_ready(self, hooks: Sequence[OnReady]) -> None:
        """Run `hooks` (in order) once connected, before the bus reports ready."""
        self._on_ready.extend(hooks)

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect(), name="nats-connect")

    async def _connect(self) -> None:
        nc = await connect(self.settings, name="polar-gateway")
        self.nc = nc
        js = nc.jetstream()
        delay = 0.5
        pending = list(self._on_ready)  # each hook runs once, even when a later one fails
        while True:
            try:
                await ensure_streams(js, self.settings)
                while pending:
                    await pending[0](js)
                    pending.pop(0)
                break
            except Exception as exc:
                log.warning("jetstream not ready, retrying", error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
        self._js = js
        self.ready.set()
        log.info("nats ready", url=str(nc.connected_url))

    @property
    def connected(self) -> bool:
        return self._js is not None and self.nc is not None and self.nc.is_connected

    def jetstream(self) -> JetStreamContext:
        """JetStream, or NatsUnavailable (503) while disconnected: fail fast rather than
        queue a publish that may never be acknowledged."""
        if self._js is None or not self.connected:
            raise NatsUnavailable()
        return self._js

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.drain(), 5)
            if not self.nc.is_closed:
                await self.nc.close()
