"""polar_kit.tracing's hooks without a cluster: what they put in headers, which spans they
make, and that a trace not sampled is carried on without any."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, StatusCode, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from polar_kit import testing, tracing, tracing_setup
from polar_kit.grpc.context import request_id_var

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
UNSAMPLED = {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-00", "X-GitHub-Delivery": "d-1"}
SAMPLED = {**UNSAMPLED, "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}


def test_off_carries_the_correlation_ids_only() -> None:
    assert not tracing.enabled()
    with tracing.consuming("polar.x", SAMPLED | {"X-Request-ID": "r-1"}, consumer="c"):
        assert tracing.outgoing_headers() == {"X-GitHub-Delivery": "d-1", "X-Request-ID": "r-1"}
    assert tracing.outgoing_headers() is None
    token = request_id_var.set("r-2")  # within an RPC
    try:
        assert tracing.outgoing_headers() == {"X-Request-ID": "r-2"}
    finally:
        request_id_var.reset(token)


def test_a_message_is_continued_as_a_child_of_its_producer() -> None:
    with testing.recorded_spans() as spans:
        with tracing.consuming("polar.x", SAMPLED, consumer="c"):
            headers = tracing.outgoing_headers()
            assert headers is not None
        (span,) = spans.get_finished_spans()
    assert span.kind == SpanKind.CONSUMER
    assert format(span.context.trace_id, "032x") == TRACE
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert (span.attributes or {})["polar.delivery"] == "d-1"
    # What it writes to the outbox names it as the parent of the relay's publish.
    assert headers["traceparent"] == f"00-{TRACE}-{span.context.span_id:016x}-01"
    assert headers["X-GitHub-Delivery"] == "d-1"


def test_a_trace_not_sampled_goes_on_without_spans() -> None:
    with testing.recorded_spans() as spans:
        with tracing.consuming("polar.x", UNSAMPLED, consumer="c"):
            headers = tracing.outgoing_headers()
            relayed: dict[str, str] = {}
            assert tracing.producing("polar.y", relayed) is None
            with tracing.span("work"):
                pass
        with tracing.relaying("polar.x", headers, {}):
            pass
        assert spans.get_finished_spans() == ()
    assert headers is not None
    assert headers["traceparent"] == UNSAMPLED["traceparent"]  # same trace, still not sampled
    assert relayed["traceparent"] == UNSAMPLED["traceparent"]


def test_a_message_published_from_a_request_is_its_child() -> None:
    # The gateway's webhook request is the producer itself: no PRODUCER span of its own.
    with testing.recorded_spans() as spans:
        with tracing.serving("POST", "/hook", {}) as request:
            headers: dict[str, str] = {}
            span = tracing.producing("github.webhook.x", headers, delivery="d-1")
            assert span is request
            tracing.annotate(span, stream_sequence=7)
        (served,) = spans.get_finished_spans()
    assert served.kind == SpanKind.SERVER
    _, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert int(trace_id, 16) == served.context.trace_id
    assert int(span_id, 16) == served.context.span_id
    assert int(flags, 16) & 1  # sampled
    attributes = dict(served.attributes or {})
    assert (
        attributes
        | {
            "messaging.system": "nats",
            "messaging.destination.name": "github.webhook.x",
            "polar.delivery": "d-1",
            "polar.stream_sequence": 7,
        }
        == attributes
    )


def test_a_query_outside_any_request_or_message_is_no_trace() -> None:
    sampler = tracing_setup.sampler_from_env()
    lone = sampler.should_sample(None, 1, "SELECT", SpanKind.CLIENT)
    assert lone.decision == Decision.DROP
    root = sampler.should_sample(None, 1, "POST /x", SpanKind.SERVER)
    assert root.decision == Decision.RECORD_AND_SAMPLE


def test_log_fields_read_the_trace_id_from_the_traceparent() -> None:
    assert tracing.log_fields(SAMPLED | {"X-Request-ID": "r-1"}) == {
        "delivery": "d-1",
        "request_id": "r-1",
        "trace_id": TRACE,
    }


async def test_an_untraced_task_makes_no_instrumentation_spans() -> None:
    async def worker() -> tuple[bool, bool]:
        before = is_instrumentation_enabled()
        tracing.untraced_task()
        return before, is_instrumentation_enabled()

    with testing.recorded_spans():
        assert await asyncio.create_task(worker()) == (True, False)
        assert is_instrumentation_enabled()  # the caller's context is untouched


def test_a_batch_follows_its_first_sampled_message() -> None:
    # At 1% sampling a sampled delivery is rarely first in its batch: its trace must still
    # go through the batch's span, or it ends at the consumer.
    other = {"traceparent": f"00-{'1' * 32}-{'2' * 16}-00"}
    with testing.recorded_spans() as spans:
        items = [("polar.x", other), ("polar.x", SAMPLED), ("polar.x", UNSAMPLED)]
        with tracing.consuming_batch(items, consumer="c"):
            headers = tracing.outgoing_headers()
        (span,) = spans.get_finished_spans()
    assert span.kind == SpanKind.CONSUMER
    assert format(span.context.trace_id, "032x") == TRACE
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"
    # Linked to the sampled message only: a trace not sampled is kept nowhere.
    assert [format(link.context.trace_id, "032x") for link in span.links] == [TRACE]
    assert headers is not None
    assert headers["traceparent"] == f"00-{TRACE}-{span.context.span_id:016x}-01"


def test_a_batch_of_unsampled_messages_makes_no_span() -> None:
    with testing.recorded_spans() as spans:
        with tracing.consuming_batch([("polar.x", UNSAMPLED)] * 2, consumer="c"):
            headers = tracing.outgoing_headers()
        assert spans.get_finished_spans() == ()
    assert headers is not None
    assert headers["traceparent"] == UNSAMPLED["traceparent"]


def test_a_row_of_a_batch_goes_on_with_its_own_message() -> None:
    # The batch's span follows SAMPLED; a row written for it carries that span. A row for
    # another message carries that message's own trace as it came: not sampled stays not
    # sampled (at 1% nearly every batch holds a sampled message), and its own delivery id.
    other = {"traceparent": f"00-{'1' * 32}-{'2' * 16}-00", "X-GitHub-Delivery": "d-2"}
    with testing.recorded_spans() as spans:
        with tracing.consuming_batch([("polar.x", other), ("polar.x", SAMPLED)], consumer="c"):
            mine = tracing.outgoing_headers(origin=SAMPLED)
            theirs = tracing.outgoing_headers(origin=other)
            common = tracing.outgoing_headers()
            # The same when a handler names the message it handles for a block.
            with tracing.handling_message(SAMPLED):
                assert tracing.outgoing_headers() == mine
            with tracing.handling_message(other):
                assert tracing.outgoing_headers() == theirs
        (span,) = spans.get_finished_spans()
    assert mine == {
        "X-GitHub-Delivery": "d-1",
        "traceparent": f"00-{TRACE}-{span.context.span_id:016x}-01",
    }
    assert theirs == other
    assert common is not None
    assert "X-GitHub-Delivery" not in common  # the batch shares none
    assert common["traceparent"] == mine["traceparent"]


def ratio_provider(ratio: float) -> tuple[TracerProvider, InMemorySpanExporter]:
    """A provider sampling new traces at `ratio`, as configure_tracing() makes it."""
    exporter = InMemorySpanExporter()
    sampler = ParentBased(tracing_setup.NoLoneClientSpans(TraceIdRatioBased(ratio)))
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_a_new_trace_not_sampled_gets_ids_but_no_span() -> None:
    provider, exporter = ratio_provider(0.0)
    tracing.install(provider, root_ratio=0.0)
    try:
        with tracing.serving("POST", "/hook", {}) as span:
            assert span is None
            headers: dict[str, str] = {}
            assert tracing.producing("github.webhook.x", headers) is None
            event = tracing.add_trace_ids(None, "info", {})
        assert tracing.add_trace_ids(None, "info", {}) == {}  # the request is over
    finally:
        tracing.uninstall()
    assert exporter.get_finished_spans() == ()
    _, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert flags == "00"
    assert int(trace_id, 16)
    assert int(span_id, 16)
    assert event == {"trace_id": trace_id, "span_id": span_id}


def test_a_new_trace_is_sampled_at_the_ratio_once() -> None:
    # serving() decides a new trace itself; the SDK, told so, must not decide again (that
    # would sample at ratio squared).
    provider, exporter = ratio_provider(0.5)
    tracing.install(provider, root_ratio=0.5)
    try:
        for _ in range(4000):
            with tracing.serving("POST", "/hook", {}):
                pass
    finally:
        tracing.uninstall()
    sampled = exporter.get_finished_spans()
    assert 1800 <= len(sampled) <= 2200, len(sampled)  # 2,000 +- 6 standard deviations
    assert all(s.kind == SpanKind.SERVER and s.parent is None for s in sampled)


def processed_provider() -> tuple[TracerProvider, InMemorySpanExporter, SimpleSpanProcessor]:
    """A provider sampling every new trace, as configure_tracing() makes it, and its span
    processor (configure_tracing() gives install() its processors)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=tracing_setup.sampler_from_env())
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    return provider, exporter, processor


def test_a_sampled_new_trace_is_recorded_without_the_sdk_span_as_the_sdk_would() -> None:
    """With the span processors given to install() (as configure_tracing() does), a sampled
    new trace's request span is tracing_setup.RootSpan: what the processors receive must be
    what the SDK's span would have given them."""
    provider, exporter, processor = processed_provider()
    tracing.install(provider, root_ratio=1.0, processors=[processor])
    try:
        with tracing.serving("POST", "/hook", {}, request_id="r-1") as request:
            assert isinstance(request, tracing_setup.RootSpan)
            headers: dict[str, str] = {}
            assert tracing.producing("github.webhook.x", headers, delivery="d-1") is request
            tracing.annotate(request, stream_sequence=7, empty=None)
            with tracing.span("inside"):
                pass
            event = tracing.add_trace_ids(None, "info", {})
        with tracing.span("outside"):  # an SDK span of the same provider
            pass
    finally:
        tracing.uninstall()
    # Ended once, given to the processors once.
    inside, served, outside = exporter.get_finished_spans()
    assert (served.name, inside.name, outside.name) == ("POST /hook", "inside", "outside")
    assert served.kind == SpanKind.SERVER
    assert served.parent is None
    assert served.context.trace_flags.sampled
    assert not served.context.is_remote
    assert inside.parent == served.context  # its children are its children
    # Grouped with every other span of the process by the OTLP encoder.
    assert served.resource == outside.resource
    assert served.instrumentation_scope == outside.instrumentation_scope
    assert served.start_time is not None
    assert served.end_time is not None
    assert inside.start_time is not None
    assert inside.end_time is not None
    assert served.start_time <= inside.start_time
    assert served.end_time >= inside.end_time
    assert dict(served.attributes or {}) == {
        "http.request.method": "POST",
        "http.route": "/hook",
        "polar.request_id": "r-1",
        "messaging.system": "nats",
        "messaging.destination.name": "github.webhook.x",
        "polar.delivery": "d-1",
        "polar.stream_sequence": 7,
    }
    trace_id, span_id = f"{served.context.trace_id:032x}", f"{served.context.span_id:016x}"
    assert headers["traceparent"] == f"00-{trace_id}-{span_id}-01"
    assert event == {"trace_id": trace_id, "span_id": span_id}


def test_a_request_that_fails_is_recorded_as_an_error() -> None:
    provider, exporter, processor = processed_provider()
    tracing.install(provider, root_ratio=1.0, processors=[processor])
    try:
        with contextlib.suppress(ValueError), tracing.serving("POST", "/hook", {}):
            raise ValueError("no such thing")
    finally:
        tracing.uninstall()
    (served,) = exporter.get_finished_spans()
    assert served.status.status_code == StatusCode.ERROR
    assert served.status.description == "ValueError: no such thing"
    (event,) = served.events
    assert event.name == "exception"
    attributes = dict(event.attributes or {})
    assert attributes["exception.type"] == "ValueError"
    assert attributes["exception.message"] == "no such thing"
    assert "raise ValueError" in str(attributes["exception.stacktrace"])


def test_always_on_is_a_ratio_of_one() -> None:
    with pytest.MonkeyPatch.context() as env:
        for name, ratio in (
            ("parentbased_always_on", 1.0),
            ("always_on", 1.0),
            ("parentbased_always_off", 0.0),
            ("parentbased_traceidratio", 0.25),
            ("parentbased_jaeger_remote", None),
        ):
            env.setenv("OTEL_TRACES_SAMPLER", name)
            env.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
            assert tracing_setup.root_ratio_from_env() == ratio, name


def test_a_traceparent_is_read_as_the_w3c_propagator_reads_it() -> None:
    w3c = TraceContextTextMapPropagator()
    cases: list[dict[str, str]] = [
        SAMPLED,
        UNSAMPLED,
        {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-03"},  # other flags kept
        {"traceparent": f"00-{TRACE.upper()}-00F067AA0BA902B7-01"},  # not ours: propagator
        {"traceparent": f"00-{'0' * 32}-00f067aa0ba902b7-01"},  # invalid trace id
        {"traceparent": f"00-{TRACE}-{'0' * 16}-01"},  # invalid span id
        {"traceparent": f"ff-{TRACE}-00f067aa0ba902b7-01"},  # invalid version
        {"traceparent": f"01-{TRACE}-00f067aa0ba902b7-01-future"},  # a later version
        {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01", "tracestate": "a=1,b=2"},
        {"traceparent": f" 00-{TRACE}-00f067aa0ba902b7-01"},
        {"traceparent": "00-4bf9_2f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
        {"traceparent": ""},
        {},
    ]
    for headers in cases:
        ours = get_current_span(tracing._extract(headers)).get_span_context()
        theirs = get_current_span(w3c.extract(headers)).get_span_context()
        assert ours == theirs, headers
        assert ours.is_remote == theirs.is_remote, headers
        assert ours.trace_state == theirs.trace_state, headers
