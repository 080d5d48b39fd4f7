"""Tracing (OpenTelemetry) and the correlation that travels with every message.

`configure_tracing()` is called once by each process at start-up. It reads the standard
variables: OTEL_SDK_DISABLED, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
OTEL_TRACES_SAMPLER(_ARG), OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT and the exporter's other
OTEL_EXPORTER_OTLP_* settings (OTLP over gRPC), plus POLAR_TRACE_DIR (spans as JSON lines,
what `make dev` and `python -m polar_dev.trace` use). With neither an endpoint nor a file,
or with OTEL_SDK_DISABLED=true, nothing is instrumented and the hooks below return at once.

Across processes (decision 0023): the W3C `traceparent` and the request id ride as NATS
headers; the gateway's publish, the outbox row (its `headers` column) and the relay's publish
carry them, and a consumer continues the trace as a child of the message's producer span.
The GitHub delivery id (X-GitHub-Delivery) is carried the same way, so one delivery can be
followed in every process's logs by that id alone, and in its trace.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager
from contextvars import ContextVar
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from structlog.typing import EventDict, WrappedLogger

from polar_kit.grpc.context import current_request_id

if TYPE_CHECKING:  # the SDK is imported only when tracing is on (it costs ~4 MB a process)
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

REQUEST_ID = "X-Request-ID"
DELIVERY = "X-GitHub-Delivery"
# Correlation carried from a message (or an RPC) to the events it causes.
CARRIED = (REQUEST_ID, DELIVERY)

# The instrumentation scope of every span the hooks make (RootSpan's included: the OTLP
# encoder groups spans by scope).
_SCOPE = "polar_kit"
# The provider's own tracer once install() ran (not the API's proxy, one call less a span).
_tracer = trace.get_tracer(_SCOPE)
# W3C trace context only, not the global propagators (OTEL_PROPAGATORS): messages carry
# `traceparent`/`tracestate` and nothing else, and the baggage propagator's work per hop is
# as large as this one's.
_W3C = TraceContextTextMapPropagator()
_enabled = False
# The plain-string key every instrumentation checks (opentelemetry.instrumentation.utils).
_SUPPRESS = "suppress_instrumentation"
# The correlation headers of the message (or RPC) being handled; outbox rows copy them.
_carried: ContextVar[Mapping[str, str] | None] = ContextVar("polar_carried", default=None)
# The `traceparent` of the message the current consumer span follows (a batch's span follows
# one of its messages): what a row written for that message carries is that span.
_following: ContextVar[str | None] = ContextVar("polar_following", default=None)
# Within a batch, the headers of the one message being handled (handling_message()).
_origin: ContextVar[Mapping[str, str] | None] = ContextVar("polar_origin", default=None)
# A request's trace decided "not sampled" at its root without the SDK (serving()): its
# `traceparent`, which messages published for it and its log lines carry.
_unsampled_root: ContextVar[str | None] = ContextVar("polar_unsampled_root", default=None)
# The root sampler's ratio when it is a plain ratio (OTEL_TRACES_SAMPLER *traceidratio or
# *always_off), which lets serving() decide a new trace without the SDK; None: ask the SDK.
_root_ratio: float | None = None
# In a start_span context: the caller decided "sampled" (tracing_setup's sampler obeys).
SAMPLED_AT_ROOT = "polar.sampled_at_root"
# Set by install() when it is given the provider's span processors: makes the span of a new
# trace serving() decided to sample (tracing_setup.RootSpan) from its trace id, span id, name
# and attributes. None: the SDK makes it.
_root_span: Callable[[int, int, str, dict[str, Any]], Span] | None = None


def enabled() -> bool:
    return _enabled


# --- set-up --------------------------------------------------------------------------------


def configure_tracing(service_name: str, trace_dir: str = "") -> bool:
    """Install the tracer provider and the instrumentations; True when tracing is on.

    `trace_dir` (POLAR_TRACE_DIR) adds a JSON-lines exporter, for local viewing."""
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    from polar_kit.tracing_setup import JsonLinesExporter, root_ratio_from_env, sampler_from_env

    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    exporters: list[SpanExporter] = []
    if endpoint:
        from polar_kit.otlp import FastOTLPSpanExporter

        # The SDK's OTLP/gRPC exporter (endpoint, headers, timeout... from OTEL_*) with an
        # encoder four times as fast: its encoding was most of a span's cost at 100%.
        exporters.append(FastOTLPSpanExporter())
    if trace_dir:
        path = Path(trace_dir) / f"{service_name}.{os.getpid()}.jsonl"
        exporters.append(JsonLinesExporter(path))
    if not exporters:
        return False
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: service_name}), sampler=sampler_from_env()
    )
    processors = [BatchSpanProcessor(exporter) for exporter in exporters]
    for processor in processors:
        provider.add_span_processor(processor)
    install(provider, root_ratio=root_ratio_from_env(), processors=processors)
    return True


def install(
    provider: TracerProvider,
    *,
    root_ratio: float | None = None,
    processors: Sequence[SpanProcessor] = (),
) -> None:
    """Make `provider` the global one and instrument grpc.aio, asyncpg and httpx (tests
    call this with an in-memory exporter). Channels and servers made before are not traced.
    `root_ratio`: the provider's root sampling ratio, when its sampler is
    tracing_setup.sampler_from_env() with a ratio (see serving()). `processors`: the span
    processors added to `provider`; serving() then records the spans of the new traces it
    samples itself and hands them to these (tracing_setup.RootSpan)."""
    global _enabled, _tracer, _root_ratio, _root_span
    if trace.get_tracer_provider() is not provider:
        trace.set_tracer_provider(provider)
    _tracer = provider.get_tracer(_SCOPE)
    _root_ratio = root_ratio
    _root_span = None
    if processors:
        from polar_kit.tracing_setup import RootSpan

        _root_span = RootSpan.maker(processors, provider.resource, _SCOPE)
    for cls in _instrumentors():
        instrumentor = cls()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
    _enabled = True


def _instrumentors() -> tuple[type[Any], ...]:  # (their __init__ is untyped)
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.grpc import (
        GrpcAioInstrumentorClient,
        GrpcAioInstrumentorServer,
    )
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    return (
        GrpcAioInstrumentorServer,
        GrpcAioInstrumentorClient,
        AsyncPGInstrumentor,
        HTTPXClientInstrumentor,
    )


def uninstall() -> None:
    """Undo install()'s instrumentations and turn the hooks off (tests). The global provider
    stays: OpenTelemetry lets a process set it once."""
    global _enabled
    for cls in _instrumentors():
        cls().uninstrument()
    _enabled = False


# --- hooks at each hop ---------------------------------------------------------------------
# They run for every request and message, so each costs as little as it can: under a trace
# that is not sampled (99 in 100 at 1%) no span is made beyond the gateway's root (which is
# where the sampler decides), no attribute is built, and the W3C context is carried on as it
# came; a recorded span is started and made current by one plain object (_Current) rather
# than the API's three nested generator context managers.


def serving(
    method: str, route: str, headers: Mapping[str, str], **attributes: Any
) -> AbstractContextManager[Span | None]:
    """A SERVER span for a request served on a fast path, without the ASGI instrumentation
    (whose generic work costs more than the webhook ingress itself); an incoming
    `traceparent` is continued. Gives the span, or None when tracing is off or the request
    is not sampled.

    A new trace under a ratio sampler is decided here, from the trace id as the SDK's
    TraceIdRatioBased does: not sampled (99 in 100 at 1%), it gets no SDK span at all, only
    ids and a `traceparent` for its messages and log lines. The SDK's span, made current
    for the request, cost about 2.5 times the rest of the tracing a delivery is given at 1%.
    Sampled, the span is recorded without the SDK's Span too when install() was given the
    span processors (tracing_setup.RootSpan, a quarter of the SDK's cost); otherwise the SDK
    makes it and is told the decision (SAMPLED_AT_ROOT)."""
    if not _enabled:
        return _NOTHING
    if _root_ratio is not None and "traceparent" not in headers:
        trace_id = random.getrandbits(128)  # the module's generator, as the SDK's ids
        if (trace_id & _LOW_64) >= _root_ratio * _BOUND:
            return _UnsampledRoot(f"00-{trace_id:032x}-{random.getrandbits(64):016x}-00")
        if _root_span is not None:
            named = {"http.request.method": method, "http.route": route, **_named(attributes)}
            name = f"{method} {route}"
            return _Current(_root_span(trace_id, random.getrandbits(64), name, named))
        context = otel_context.set_value(SAMPLED_AT_ROOT, True, otel_context.Context())
    else:
        context = _extract(headers)
    span = _tracer.start_span(f"{method} {route}", context=context, kind=SpanKind.SERVER)
    if span.is_recording():
        span.set_attributes(
            {"http.request.method": method, "http.route": route, **_named(attributes)}
        )
    return _Current(span)


def producing(subject: str, headers: MutableMapping[str, str], **attributes: Any) -> Span | None:
    """A message published from within the current span (the gateway's webhook request):
    that span is its producer. Its context goes into `headers` and the messaging attributes
    onto it. Gives the span (set the stream sequence on it), or None when tracing is off or
    it is not recorded. No PRODUCER span of its own: one would cost the SDK as much as the
    request's own span, start to export, for what its attributes say (decision 0023)."""
    if not _enabled:
        return None
    if unsampled := _unsampled_root.get():
        headers["traceparent"] = unsampled
        return None
    _W3C.inject(headers)  # sampled or not, the trace id goes on
    span = trace.get_current_span()
    if not span.is_recording():
        return None
    span.set_attributes(_messaging(subject, attributes))
    return span


def relaying(
    subject: str, stored: Mapping[str, str] | None, headers: MutableMapping[str, str]
) -> AbstractContextManager[Span | None]:
    """The relay's publish of an outbox row: a PRODUCER span, child of the span that wrote
    the row (its stored `traceparent`), whose context replaces it in `headers`."""
    if not _enabled or not _sampled(stored):  # `headers` carry the stored traceparent already
        return _NOTHING
    parent = _extract(stored or {})
    span = _tracer.start_span(f"publish {subject}", context=parent, kind=SpanKind.PRODUCER)
    if span.is_recording():
        span.set_attributes(_messaging(subject, _ids(stored or {})))
    _W3C.inject(headers, trace.set_span_in_context(span))
    return _Current(span)


@contextlib.contextmanager
def consuming(subject: str, headers: Mapping[str, str], *, consumer: str) -> Iterator[None]:
    """Handling one message: its correlation headers become the current ones (outbox rows
    written meanwhile copy them) and, when tracing, a CONSUMER span continues the producer's
    trace as its child."""
    carried = {k: headers[k] for k in CARRIED if k in headers}
    token = _carried.set(carried)
    try:
        if not _enabled:
            yield
            return
        parent = _extract(headers)
        if _unsampled(parent):
            with _quiet(parent):
                yield  # its queries make no spans; what it writes carries the trace on
            return
        span = _tracer.start_span(f"process {subject}", context=parent, kind=SpanKind.CONSUMER)
        if span.is_recording():
            attributes = {"messaging.consumer.group.name": consumer, **_ids(carried)}
            span.set_attributes(_messaging(subject, attributes))
        with _following_message(span, headers.get("traceparent")):
            yield
    finally:
        _carried.reset(token)


@contextlib.contextmanager
def consuming_batch(
    items: Sequence[tuple[str, Mapping[str, str]]], *, consumer: str
) -> Iterator[None]:
    """Handling a batch of (subject, headers) in one transaction. One message: as
    consuming(). Several: the span is a child of the producer of the first message whose
    trace is sampled and links to every sampled message. Outbox rows written meanwhile carry the
    batch span and the correlation its messages share, or, given the message they come from
    (outgoing_headers(origin=...)), that message's own (decision 0023)."""
    if len(items) == 1:
        with consuming(*items[0], consumer=consumer):
            yield
        return
    common = {k: v for k, v in (items[0][1] if items else {}).items() if k in CARRIED}
    for _, headers in items[1:]:
        common = {k: v for k, v in common.items() if headers.get(k) == v}
    token = _carried.set(common)
    try:
        if not _enabled:
            yield
            return
        # The span follows the first message whose trace is sampled (a string test per
        # message): at 1% a sampled delivery is rarely first in its batch, and its trace
        # would otherwise end here.
        first = next((h for _, h in items if _sampled(h)), None)
        if first is None:
            # Every trace is unsampled: no span would be recorded (the sampler follows its
            # parent), nothing to link, and its queries make none either.
            with _quiet(_extract(items[0][1] if items else {})):
                yield
            return
        parent = _extract(first)
        span = _tracer.start_span(
            f"process {consumer} batch",
            context=parent,
            kind=SpanKind.CONSUMER,
            # Links to the traces that are kept: one not sampled exists nowhere.
            links=[Link(c) for c in (_remote(h) for _, h in items if _sampled(h)) if c.is_valid],
        )
        if span.is_recording():
            span.set_attribute("messaging.batch.message_count", len(items))
        with _following_message(span, first.get("traceparent")):
            yield
    finally:
        _carried.reset(token)


def span(name: str, **attributes: Any) -> AbstractContextManager[Span | None]:
    """An internal span (a sync, a page, a wait); nothing when tracing is off."""
    if not _enabled or _unsampled(otel_context.get_current()):
        return _NOTHING
    started = _tracer.start_span(name)
    if started.is_recording():
        started.set_attributes(_named(attributes))
    return _Current(started)


def annotate(span: Any = None, /, **attributes: Any) -> None:
    """Attributes (`polar.<name>`) on `span`, or on the current span, if it is recorded."""
    # Within a request whose trace serving() decided not to sample, nothing is recorded:
    # known without looking up the current span (three times a delivery at 1%).
    if _enabled and _unsampled_root.get() is None:
        span = span or trace.get_current_span()
        if span.is_recording():
            span.set_attributes(_named(attributes))


def untraced_task() -> None:
    """The rest of the current task makes no spans through the instrumentations: a worker
    whose own queries are no trace worth keeping (the outbox relay; its publishes still are,
    see relaying()). Spares the instrumentations' work for spans the sampler drops anyway."""
    if _enabled:
        otel_context.attach(otel_context.set_value(_SUPPRESS, True))


def outgoing_headers(
    request_id: str | None = None, *, origin: Mapping[str, str] | None = None
) -> dict[str, str] | None:
    """What an outbox row carries to its message: the current trace context and the
    correlation of the message or RPC being handled. None when there is nothing.

    `origin`: the headers of the message, among a batch's, that the row comes from. The
    row then carries that message's delivery and request ids, and its trace: the batch's
    span when the span follows that message, else the message's own `traceparent` as it
    came. So a delivery not sampled stays not sampled downstream (at 1%, nearly every batch
    of 100 holds a sampled delivery: its span would otherwise make every row's trace
    sampled), and each downstream log line names its own delivery. Within
    handling_message(), that message is the origin."""
    if origin is None:
        origin = _origin.get()
    if origin is not None:
        return _from_origin(origin)
    headers = dict(_carried.get() or {})
    if request_id:
        headers[REQUEST_ID] = request_id
    elif REQUEST_ID not in headers and (rid := current_request_id()):
        headers[REQUEST_ID] = rid
    if _enabled:
        _W3C.inject(headers)
    return headers or None


@contextlib.contextmanager
def handling_message(headers: Mapping[str, str]) -> Iterator[None]:
    """Within a batch handler: the block handles this one message, so the outbox rows
    written in it carry its ids and trace (outgoing_headers(origin=headers)) rather than
    the batch's."""
    token = _origin.set(headers)
    try:
        yield
    finally:
        _origin.reset(token)


def _from_origin(origin: Mapping[str, str]) -> dict[str, str] | None:
    headers = {k: origin[k] for k in CARRIED if k in origin}
    parent = origin.get("traceparent")
    if _enabled and parent is not None and parent == _following.get():
        _W3C.inject(headers)  # the consumer's span, which follows this message
    elif parent is not None:
        headers["traceparent"] = parent
        if "tracestate" in origin:
            headers["tracestate"] = origin["tracestate"]
    return headers or None


def log_fields(headers: Mapping[str, str]) -> dict[str, str]:
    """Log fields of a message: delivery id, request id and trace id (read from its
    `traceparent`, so a consumer logs it even when its own tracing is off)."""
    fields = {}
    if delivery := headers.get(DELIVERY):
        fields["delivery"] = delivery
    if request_id := headers.get(REQUEST_ID):
        fields["request_id"] = request_id
    parent = headers.get("traceparent", "")
    if len(parent) >= 55:  # 00-<32 hex trace id>-<16 hex span id>-<flags>
        fields["trace_id"] = parent[3:35]
    return fields


def add_trace_ids(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """structlog processor: trace_id and span_id of the current span, when there is one
    (fields bound already, e.g. a message's, are kept)."""
    if not _enabled:
        return event
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event.setdefault("span_id", format(ctx.span_id, "016x"))
    elif unsampled := _unsampled_root.get():  # 00-<trace id>-<span id>-00
        event.setdefault("trace_id", unsampled[3:35])
        event.setdefault("span_id", unsampled[36:52])
    return event


def _messaging(subject: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    return {"messaging.system": "nats", "messaging.destination.name": subject, **_named(extra)}


def _unsampled(ctx: otel_context.Context) -> bool:
    """Within a trace that is not sampled: spans would be created only to be dropped (at 1%
    sampling, 99 times in 100), so the hooks pass the context on without one."""
    parent = trace.get_current_span(ctx).get_span_context()
    return parent.is_valid and not parent.trace_flags.sampled


def _sampled(headers: Mapping[str, str] | None) -> bool:
    """False when `headers` carry the traceparent of a trace not sampled, read from its
    flags (the last hex digit even: no "sampled" bit) without parsing the rest: the relay
    asks for every row."""
    parent = (headers or {}).get("traceparent", "")
    return not (len(parent) == 55 and parent[-1] in "02468ace")


def _extract(headers: Mapping[str, str]) -> otel_context.Context:
    """What _W3C.extract(headers) gives, at a third of its cost for a `traceparent` as this
    suite writes it (version 00, no `tracestate`): the propagator's generic getter, pattern
    and checks ran for every message a consumer or the relay handled. Any other header goes
    to the propagator."""
    parent = headers.get("traceparent")
    found = _TRACEPARENT.fullmatch(parent) if parent and "tracestate" not in headers else None
    if found is None or found[1] == _NO_TRACE or found[2] == _NO_SPAN:
        return _W3C.extract(headers)
    flags = TraceFlags(int(found[3], 16))
    remote = SpanContext(int(found[1], 16), int(found[2], 16), is_remote=True, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(remote), otel_context.Context())


def _remote(headers: Mapping[str, str]) -> SpanContext:
    return trace.get_current_span(_extract(headers)).get_span_context()


class _Current:
    """`span` current for a with-block and ended after it, an exception recorded on it: what
    Tracer.start_as_current_span does, in one plain object instead of three nested generator
    context managers."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: Span) -> None:
        self._span = span

    def __enter__(self) -> Span:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        otel_context.detach(self._token)
        # Exceptions only (not CancelledError, GeneratorExit...), as the API does.
        if isinstance(exc, Exception) and self._span.is_recording():
            self._span.record_exception(exc)
            self._span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        self._span.end()


_NOTHING: contextlib.nullcontext[None] = contextlib.nullcontext()
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_NO_TRACE, _NO_SPAN = "0" * 32, "0" * 16  # invalid ids: the propagator ignores the header
_LOW_64 = (1 << 64) - 1
_BOUND = 1 << 64


class _UnsampledRoot:
    """A request whose new trace is not sampled: its `traceparent` current for the block."""

    __slots__ = ("_token", "traceparent")

    def __init__(self, traceparent: str) -> None:
        self.traceparent = traceparent

    def __enter__(self) -> None:
        self._token = _unsampled_root.set(self.traceparent)

    def __exit__(self, *_: object) -> None:
        _unsampled_root.reset(self._token)


@contextlib.contextmanager
def _following_message(span: Span, traceparent: str | None) -> Iterator[None]:
    """`span` current, continuing the message whose `traceparent` is given: outbox rows
    written for that message carry the span (outgoing_headers(origin=...))."""
    token = _following.set(traceparent)
    try:
        with _Current(span):
            yield
    finally:
        _following.reset(token)


@contextlib.contextmanager
def _quiet(parent: otel_context.Context) -> Iterator[None]:
    """`parent` current, and the instrumentations off: under a trace not sampled their spans
    would only be dropped."""
    token = otel_context.attach(otel_context.set_value(_SUPPRESS, True, parent))
    try:
        yield
    finally:
        otel_context.detach(token)


def _ids(carried: Mapping[str, str]) -> dict[str, str]:
    """Span attributes of the correlation ids (polar_dev.trace finds a trace by them)."""
    ids = {}
    if DELIVERY in carried:
        ids["polar.delivery"] = carried[DELIVERY]
    if REQUEST_ID in carried:
        ids["polar.request_id"] = carried[REQUEST_ID]
    return ids


def _named(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k if "." in k else f"polar.{k}": v for k, v in attributes.items()}
