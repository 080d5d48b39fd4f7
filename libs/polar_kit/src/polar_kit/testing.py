"""Helpers for tests of services built on polar_kit (real NATS, no mocks)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from polar_kit import tracing, tracing_setup
from polar_kit.logging import configure_logging
from polar_kit.nats import StreamSpec
from polar_kit.settings import ServiceSettings


async def count_messages(
    js: JetStreamContext, settings: ServiceSettings, stream: StreamSpec, subject: str
) -> int:
    """Messages stored on `stream` under the (logical) `subject` filter."""
    sub = await js.pull_subscribe(
        settings.nats_prefix + subject,
        stream=stream.stream_name(settings.nats_prefix),
        config=ConsumerConfig(ack_policy=AckPolicy.NONE, inactive_threshold=5),
    )
    try:
        info = await sub.consumer_info()
        return int(info.num_pending or 0)
    finally:
        await sub.unsubscribe()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10) -> None:
    """Wait until `check()` is true, polling; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@contextlib.contextmanager
def log_lines() -> Iterator[list[str]]:
    """Every log line meanwhile, rendered as a service renders it (JSON)."""
    configure_logging("INFO", json=True)
    root = logging.getLogger()
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    keep = Keep()
    keep.setFormatter(root.handlers[0].formatter)
    root.addHandler(keep)
    try:
        yield lines
    finally:
        root.removeHandler(keep)


_spans: InMemorySpanExporter | None = None
_provider: TracerProvider | None = None
_processor: SimpleSpanProcessor | None = None


@contextlib.contextmanager
def recorded_spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for the block (the servers, channels and engines made in it are traced),
    every finished span kept in memory. One provider for the whole process: OpenTelemetry
    lets a process set its provider once."""
    global _spans, _provider, _processor
    if _provider is None or _spans is None or _processor is None:
        _spans = InMemorySpanExporter()
        _provider = TracerProvider(sampler=tracing_setup.sampler_from_env())
        _processor = SimpleSpanProcessor(_spans)
        _provider.add_span_processor(_processor)
    # As configure_tracing() does: the gateway's new traces are decided and recorded by
    # tracing.serving() itself.
    ratio = tracing_setup.root_ratio_from_env()
    tracing.install(_provider, root_ratio=ratio, processors=[_processor])
    try:
        yield _spans
    finally:
        tracing.uninstall()
        _spans.clear()
