"""Gauges that are read from NATS and PostgreSQL rather than counted as things happen: a
consumer's pending messages, the outbox backlog, the parked stream. Sampled every
`metrics_sample_seconds` by one background worker per process (never per event, never on the
scrape thread, which has no event loop). Each replica reports the same shared numbers, so
dashboards and alerts take the max over instances (deploy/observability)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import nats.js.errors
import structlog
from nats.js import JetStreamContext

from polar_kit.consumer import Consumer
from polar_kit.metrics import PARKED_MESSAGES, PARKED_STREAM_BYTES, PARKED_STREAM_MESSAGES
from polar_kit.nats import PARKED, strip_prefix
from polar_kit.outage import brief
from polar_kit.settings import ServiceSettings

log = structlog.get_logger(__name__)


@runtime_checkable
class Sampled(Protocol):
    """A worker with gauges of its own to refresh (Consumer, OutboxRelay)."""

    async def sample_metrics(self) -> None: ...


class MetricsSampler:
    """A polar_kit Worker: refreshes the sampled gauges until `stop` is set."""

    def __init__(
        self, workers: Sequence[object], js: JetStreamContext, settings: ServiceSettings
    ) -> None:
        self._sampled = [w for w in workers if isinstance(w, Sampled)]
        self._js = js
        self._settings = settings
        # This process's consumers show 0 rather than nothing before they ever park.
        self._parked_consumers = {w.name for w in workers if isinstance(w, Consumer)}

    async def sample(self) -> None:
        """One round; a source that does not answer keeps its last values (logged at debug:
        the outage is reported by the worker that owns the connection)."""
        for source in (*(s.sample_metrics for s in self._sampled), self.sample_parked):
            try:
                await source()
            except Exception as exc:
                log.debug("metrics not sampled", error=brief(exc))

    async def sample_parked(self) -> None:
        name = PARKED.stream_name(self._settings.nats_prefix)
        prefix = f"{self._settings.nats_prefix}parked."
        try:
            info = await self._js.stream_info(name, subjects_filter=f"{prefix}>")
        except nats.js.errors.NotFoundError:
            return
        PARKED_STREAM_MESSAGES.labels(name).set(info.state.messages)
        PARKED_STREAM_BYTES.labels(name).set(info.state.bytes)
        counts = {
            strip_prefix(self._settings, subject).removeprefix("parked."): count
            for subject, count in (info.state.subjects or {}).items()
        }
        # A consumer whose messages were all replayed drops out of the answer: show it at 0.
        for consumer in self._parked_consumers - counts.keys():
            PARKED_MESSAGES.labels(consumer).set(0)
        for consumer, count in counts.items():
            PARKED_MESSAGES.labels(consumer).set(count)
        self._parked_consumers |= counts.keys()

    async def run(self, stop: asyncio.Event) -> None:
        interval = self._settings.metrics_sample_seconds
        while not stop.is_set():
            await self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
