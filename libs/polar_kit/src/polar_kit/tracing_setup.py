"""What configure_tracing() installs (polar_kit.tracing): the sampler, read from the standard
OTEL_TRACES_SAMPLER(_ARG), the span of a new trace the gateway samples (RootSpan), and the
JSON-lines exporter for local viewing. Imported only when tracing is on: the OpenTelemetry
SDK costs a process about 4 MB.
"""

from __future__ import annotations

import json
import os
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import AnyValue, Attributes

from polar_kit.tracing import SAMPLED_AT_ROOT


def _sampler_env() -> tuple[str, float]:
    """OTEL_TRACES_SAMPLER (default parentbased_always_on) and OTEL_TRACES_SAMPLER_ARG (1.0
    when missing or not a number), as the SDK reads them."""
    name = os.environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    try:
        ratio = float(os.environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
    except ValueError:
        ratio = 1.0
    return name, ratio


def root_ratio_from_env() -> float | None:
    """The ratio sampler_from_env()'s root sampler samples new traces at, when it is a plain
    ratio, always or never (tracing.serving() then decides a new trace itself); None
    otherwise."""
    name, ratio = _sampler_env()
    if name in ("always_off", "parentbased_always_off"):
        return 0.0
    if name in ("always_on", "parentbased_always_on"):
        return 1.0
    if name not in ("traceidratio", "parentbased_traceidratio"):
        return None
    return min(max(ratio, 0.0), 1.0)


def sampler_from_env() -> Sampler:
    """OTEL_TRACES_SAMPLER(_ARG) as the SDK reads them (default parentbased_always_on), with
    database and outgoing calls made outside any request or message not traced: a relay's
    or a poller's query alone is no trace worth keeping."""
    name, ratio = _sampler_env()
    root: Sampler = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": TraceIdRatioBased(ratio),
        "parentbased_always_on": ALWAYS_ON,
        "parentbased_always_off": ALWAYS_OFF,
        "parentbased_traceidratio": TraceIdRatioBased(ratio),
    }.get(name, ALWAYS_ON)
    if name.startswith("parentbased_") or name not in ("always_on", "always_off", "traceidratio"):
        return ParentBased(NoLoneClientSpans(root))
    return NoLoneClientSpans(root)


class NoLoneClientSpans(Sampler):
    """Drops a root span of kind CLIENT (a query or call with no request or message around
    it); samples a root span its caller decided to sample (tracing.SAMPLED_AT_ROOT in its
    context: tracing.serving()); asks `root` about every other root span."""

    def __init__(self, root: Sampler) -> None:
        self._root = root

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        if (
            kind == SpanKind.CLIENT
            and not trace.get_current_span(parent_context).get_span_context().is_valid
        ):
            return SamplingResult(Decision.DROP)
        if otel_context.get_value(SAMPLED_AT_ROOT, parent_context):
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        return self._root.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"NoLoneClientSpans{{{self._root.get_description()}}}"


_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


class RootSpan(trace.Span):
    """The SERVER span of a request whose new trace tracing.serving() decided to sample,
    recorded without the SDK's Span, at a quarter of its cost (decision 0028): no sampler
    asked again, no lock (the request's task alone writes it), attributes in a plain dict
    (the SDK's limits are not applied: serving() gives a handful, and values of no valid
    type are the caller's bug). Ended, it goes to the provider's span processors as the
    SDK's ReadableSpan, as any span does."""

    @classmethod
    def maker(
        cls, processors: Sequence[SpanProcessor], resource: Resource, scope: str
    ) -> Callable[[int, int, str, dict[str, Any]], RootSpan]:
        """What tracing.serving() calls: (trace id, span id, name, attributes) -> span."""
        held = tuple(processors)
        # Equal to the scope of spans from the provider's tracer of that name, which
        # TracerProvider.get_tracer() gives an empty version: the OTLP encoder groups spans
        # by scope.
        instrumentation = InstrumentationScope(scope, "")

        def make(trace_id: int, span_id: int, name: str, attributes: dict[str, Any]) -> RootSpan:
            context = SpanContext(trace_id, span_id, is_remote=False, trace_flags=_SAMPLED)
            return cls(context, name, attributes, held, resource, instrumentation)

        return make

    def __init__(
        self,
        context: SpanContext,
        name: str,
        attributes: dict[str, Any],
        processors: tuple[SpanProcessor, ...],
        resource: Resource,
        scope: InstrumentationScope,
    ) -> None:
        self._start = time.time_ns()
        self._end: int | None = None
        self._context = context
        self._name = name
        self._attributes = {k: v for k, v in attributes.items() if v is not None}
        self._events: list[Event] = []
        self._status = Status(StatusCode.UNSET)
        self._processors = processors
        self._resource = resource
        self._scope = scope

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end is None

    def set_attributes(self, attributes: Mapping[str, AnyValue]) -> None:
        if self._end is None:
            self._attributes.update((k, v) for k, v in attributes.items() if v is not None)

    def set_attribute(self, key: str, value: AnyValue) -> None:
        self.set_attributes({key: value})

    def add_event(
        self, name: str, attributes: Attributes = None, timestamp: int | None = None
    ) -> None:
        if self._end is None:
            self._events.append(Event(name, attributes, timestamp))

    def update_name(self, name: str) -> None:
        self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._status.status_code is StatusCode.OK:  # final, as the SDK has it
            return
        self._status = status if isinstance(status, Status) else Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        # The attributes the SDK's Span gives the event (semantic conventions).
        recorded: dict[str, Any] = {
            "exception.type": type(exception).__name__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        self.add_event("exception", recorded | dict(attributes or {}), timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end is not None:
            return
        self._end = end_time or time.time_ns()
        finished = ReadableSpan(
            name=self._name,
            context=self._context,
            resource=self._resource,
            attributes=self._attributes,
            events=tuple(self._events),
            kind=SpanKind.SERVER,
            status=self._status,
            start_time=self._start,
            end_time=self._end,
            instrumentation_scope=self._scope,
        )
        for processor in self._processors:
            processor.on_end(finished)


# One encoder for every span (json.dumps with an argument makes one a call).
_ENCODER = json.JSONEncoder(default=str, check_circular=False)


class JsonLinesExporter(SpanExporter):
    """Appends each finished span as one JSON object per line (polar_dev.trace reads them)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [_ENCODER.encode(span_record(s)) + "\n" for s in spans]
        with self._lock:
            self._file.writelines(lines)
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._file.close()


def span_record(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    assert ctx is not None
    return {
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "service": span.resource.attributes.get(SERVICE_NAME),
        "start": span.start_time,
        "end": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "links": [
            {
                "trace_id": format(link.context.trace_id, "032x"),
                "span_id": format(link.context.span_id, "016x"),
            }
            for link in span.links
        ],
    }
