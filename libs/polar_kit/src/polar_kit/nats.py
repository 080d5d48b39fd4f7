"""NATS connection, JetStream stream declarations and publishing.

Subjects in code and in the database are logical (`polar.organization.v1.created`); the
deployment's `nats_prefix` is added here on the way out and stripped on the way in, so test
runs and deployments sharing one NATS server never see each other's messages.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass

import nats
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck, RetentionPolicy, StorageType, StreamConfig

from polar_kit.outage import Outage, brief
from polar_kit.settings import ServiceSettings

log = structlog.get_logger(__name__)

DAY = 24 * 3600.0


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    max_age: float | None  # seconds; None keeps messages until deleted

    def stream_name(self, prefix: str) -> str:
        return stream_prefix(prefix) + self.name

    def config(self, settings: ServiceSettings) -> StreamConfig:
        return StreamConfig(
            name=self.stream_name(settings.nats_prefix),
            subjects=[settings.nats_prefix + s for s in self.subjects],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=settings.nats_replicas,
            duplicate_window=settings.nats_duplicate_window_seconds,
            max_age=self.max_age,
        )


WEBHOOKS = StreamSpec("GITHUB_WEBHOOKS", ("github.webhook.>",), max_age=7 * DAY)
EVENTS = StreamSpec("POLAR_EVENTS", ("polar.>",), max_age=30 * DAY)
# Parked messages wait for an operator: never expire.
PARKED = StreamSpec("POLAR_PARKED", ("parked.>",), max_age=None)
STREAMS = (WEBHOOKS, EVENTS, PARKED)


def stream_prefix(prefix: str) -> str:
    """`t3f9a.` -> `T3F9A_`: stream names allow neither dots nor wildcards."""
    return re.sub(r"[^A-Z0-9_-]", "_", prefix.upper())


def subject_for(settings: ServiceSettings, subject: str) -> str:
    return settings.nats_prefix + subject


def strip_prefix(settings: ServiceSettings, subject: str) -> str:
    prefix = settings.nats_prefix
    return subject[len(prefix) :] if prefix and subject.startswith(prefix) else subject


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: `*` is one token, a trailing `>` one or more."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


async def connect(settings: ServiceSettings, *, name: str | None = None) -> Client:
    """Connect, retrying until NATS answers; once connected, reconnect forever."""

    # While disconnected, nats-py reports every failed reconnect: summarised, not one each.
    outage = Outage(f"NATS connection ({name or 'client'})", base=1, cap=1)

    async def disconnected() -> None:
        if not nc.is_closed:  # closing on purpose is no outage
            outage.failed(ConnectionError("disconnected"))

    async def reconnected() -> None:
        outage.recovered()
        log.info("nats reconnected", url=str(nc.connected_url))

    async def error(exc: Exception) -> None:
        if outage.ongoing:
            outage.failed(exc)
        else:
            log.warning("nats error", error=brief(exc))

    async def closed() -> None:
        log.info("nats connection closed")

    delay = 0.5
    while True:
        nc = Client()
        try:
            await nc.connect(
                servers=settings.nats_url.split(","),
                name=name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                error_cb=error,
                closed_cb=closed,
            )
            return nc
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            # The services may start before NATS does (compose, Kubernetes): keep trying.
            log.warning("nats not reachable, retrying", url=settings.nats_url, error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)


async def ensure_streams(js: JetStreamContext, settings: ServiceSettings) -> None:
    """Create or update every stream; safe to call from every replica at start-up.

    Retried while JetStream does not answer: a cluster electing a leader (a node killed or
    frozen) times out or answers 503 for seconds, which must not end the process."""
    outage = Outage("JetStream streams", base=0.5, cap=5)
    for spec in STREAMS:
        while True:
            try:
                await ensure_stream(js, spec.config(settings))
                break
            except (TimeoutError, nats.js.errors.ServiceUnavailableError) as exc:
                await asyncio.sleep(outage.failed(exc, stream=spec.name))
        outage.recovered()


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    assert config.name is not None
    try:
        await js.stream_info(config.name)
    except nats.js.errors.NotFoundError:
        try:
            await js.add_stream(config)
            log.info("stream created", stream=config.name)
            return
        except nats.js.errors.BadRequestError:
            # Another replica created it meanwhile; fall through to update.
            pass
    await js.update_stream(config)


async def publish(
    js: JetStreamContext,
    subject: str,
    data: bytes,
    *,
    msg_id: str,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 - passed on to nats-py's request timeout
) -> PubAck:
    """Publish to JetStream and wait for the PubAck; raises when the stream did not store it.

    `msg_id` becomes Nats-Msg-Id: JetStream drops a second publish with the same id within
    the duplicate window (the PubAck then says `duplicate=True`).
    """
    hdrs = {**(headers or {}), "Nats-Msg-Id": msg_id}
    return await js.publish(subject, data, timeout=timeout, headers=hdrs)
