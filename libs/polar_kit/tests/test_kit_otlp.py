"""polar_kit.otlp: what encode_spans() writes parses to the very message the SDK's encoder
builds, case by case and for a mixed batch, and FastOTLPSpanExporter delivers it to a gRPC
collector."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.span import TraceState
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util.types import AnyValue, Attributes
from polar_kit import otlp, tracing_setup

SCHEMA = "https://opentelemetry.io/schemas/1.26.0"
RESOURCE = Resource({"service.name": "gateway", "service.instance.id": "g-1"}, SCHEMA)
OTHER_RESOURCE = Resource({"service.name": "repository"})
TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
REMOTE = SpanContext(TRACE_ID, 0x00F067AA0BA902B7, is_remote=True, trace_flags=TraceFlags(1))
LOCAL = SpanContext(0xA3CE929D0E0E47364BF92F3577B34DA6, 0x1122334455667788, is_remote=False)

# Every kind of value, the edges of each: proto3 writes a oneof member at its default ("",
# False, 0, 0.0), an int64 below zero is a ten-byte varint, a string's length is in bytes.
VALUES: dict[str, AnyValue] = {
    "str": "POST",
    "str.empty": "",
    "str.non_ascii": "naïve ☃ 日本語",
    "str.long": "é" * 200,  # lengths of more than one varint byte
    "bool.true": True,
    "bool.false": False,
    "int.zero": 0,
    "int.negative": -1,
    "int.min": -(2**63),
    "int.max": 2**63 - 1,
    "int.large": 2**40 + 7,
    "float": 1.5,
    "float.zero": 0.0,
    "float.negative": -2.25,
    "float.inf": float("inf"),
    "bytes": b"\x00\xff\x10",
    "bytes.empty": b"",
    "tuple.str": ("a", "", "é"),
    "tuple.bool": (True, False),
    "tuple.int": (0, -1, 2**62),
    "tuple.float": (0.0, -1.5),
    "tuple.bytes": (b"a", b""),
    "tuple.empty": (),
    "tuple.mixed": (1, "a", None, (2, 3)),
    "mapping": {"k": 1, "nested": {"x": (1, 2), "y": ""}, "": "empty key"},
    "none": None,
}


class Spans:
    """An SDK pipeline of its own, each finished span kept: real spans, as an exporter gets."""

    def __init__(self, resource: Resource = RESOURCE, limits: SpanLimits | None = None) -> None:
        self.exported = InMemorySpanExporter()
        self.provider = TracerProvider(resource=resource, span_limits=limits)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exported))

    def tracer(
        self,
        name: str = "polar_kit.tracing",
        version: str | None = "0.1.0",
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> trace.Tracer:
        return self.provider.get_tracer(name, version, schema_url, attributes)

    def finished(self) -> list[ReadableSpan]:
        return list(self.exported.get_finished_spans())


def assert_encoded_like_the_sdk(spans: Sequence[ReadableSpan]) -> None:
    ours = ExportTraceServiceRequest.FromString(otlp.encode_spans(spans))
    assert ours == sdk_encode_spans(spans)


def one_span(
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Attributes = None,
    parent: SpanContext | None = None,
    links: Sequence[Link] = (),
    limits: SpanLimits | None = None,
) -> list[ReadableSpan]:
    spans = Spans(limits=limits)
    context = trace.set_span_in_context(NonRecordingSpan(parent)) if parent else None
    with spans.tracer().start_as_current_span(
        "one", context, kind, attributes, links, record_exception=False
    ):
        pass
    return spans.finished()


@pytest.mark.parametrize("key", list(VALUES))
def test_an_attribute_of_each_type(key: str) -> None:
    (span,) = one_span(attributes={key: VALUES[key]})
    assert key in (span.attributes or {})  # kept by the SDK, to be encoded
    assert_encoded_like_the_sdk([span])


def test_every_type_everywhere_an_attribute_goes() -> None:
    spans = Spans(Resource(VALUES))
    tracer = spans.tracer(attributes=VALUES)
    links = [Link(LOCAL, VALUES)]
    with tracer.start_as_current_span("all", attributes=VALUES, links=links) as span:
        span.add_event("event", VALUES)
    assert_encoded_like_the_sdk(spans.finished())


def test_a_span_without_attributes() -> None:
    (span,) = one_span()
    assert not span.attributes
    assert_encoded_like_the_sdk([span])


@pytest.mark.parametrize("kind", list(SpanKind))
def test_each_kind(kind: SpanKind) -> None:
    assert_encoded_like_the_sdk(one_span(kind=kind))


def test_parents_remote_local_and_none() -> None:
    spans = Spans()
    tracer = spans.tracer()
    remote = trace.set_span_in_context(NonRecordingSpan(REMOTE))
    with (
        tracer.start_as_current_span("child of remote", remote),
        tracer.start_as_current_span("child of local"),
    ):
        pass
    with tracer.start_as_current_span("root"):
        pass
    child_of_local, child_of_remote, root = spans.finished()
    assert child_of_remote.parent is not None
    assert child_of_remote.parent.is_remote
    assert child_of_local.parent is not None
    assert not child_of_local.parent.is_remote
    assert root.parent is None
    for span in (child_of_local, child_of_remote, root):
        assert_encoded_like_the_sdk([span])


def test_trace_state() -> None:
    state = TraceState([("polar", "d-1"), ("vendor", "x=1")])
    parent = SpanContext(TRACE_ID, 0x1, True, TraceFlags(1), state)
    (span,) = one_span(parent=parent)
    assert span.get_span_context().trace_state == state  # type: ignore[union-attr]
    assert_encoded_like_the_sdk([span])


def test_events_with_and_without_attributes() -> None:
    spans = Spans()
    with spans.tracer().start_as_current_span("events") as span:
        span.add_event("plain")
        span.add_event("with", {"polar.delivery": "d-1", "n": 3, "ok": False}, timestamp=12345)
        span.add_event("", {"x": 1.0})
    assert_encoded_like_the_sdk(spans.finished())


def test_links_remote_and_local_with_attributes() -> None:
    links = [Link(REMOTE, {"polar.delivery": "d-1", "n": -5}), Link(LOCAL), Link(LOCAL, {})]
    assert_encoded_like_the_sdk(one_span(links=links))


@pytest.mark.parametrize(
    "status",
    [
        Status(StatusCode.UNSET),
        Status(StatusCode.OK),
        Status(StatusCode.ERROR),
        Status(StatusCode.ERROR, "NotFound: no such repository ☃"),
        Status(StatusCode.ERROR, "x" * 300),
    ],
    ids=["unset", "ok", "error", "error with description", "error with long description"],
)
def test_status(status: Status) -> None:
    spans = Spans()
    with spans.tracer().start_as_current_span("status", set_status_on_exception=False) as span:
        span.set_status(status)
    (finished,) = spans.finished()
    assert finished.status.status_code is status.status_code
    assert_encoded_like_the_sdk([finished])


def test_dropped_counts() -> None:
    limits = SpanLimits(
        max_span_attributes=2,
        max_events=1,
        max_links=1,
        max_event_attributes=1,
        max_link_attributes=1,
    )
    two = {"a": 1, "b": 2}
    links = [Link(LOCAL), Link(LOCAL, two), Link(REMOTE, two)]  # the last one kept
    spans = Spans(limits=limits)
    with spans.tracer().start_as_current_span("dropping", links=links) as span:
        span.set_attributes({"a": 1, "b": "2", "c": 3.0})
        for name in ("first", "second", "third"):
            span.add_event(name, two)
    (finished,) = spans.finished()
    assert finished.dropped_attributes == 1
    assert finished.dropped_events == 2
    assert finished.dropped_links == 2
    assert finished.events[0].dropped_attributes == 1
    assert finished.links[0].dropped_attributes == 1
    assert_encoded_like_the_sdk([finished])


def test_grouped_by_resource_then_scope_in_first_seen_order() -> None:
    first, second = Spans(RESOURCE), Spans(OTHER_RESOURCE)
    batch: list[ReadableSpan] = []
    # Interleaved: resources and scopes each come back in the order first seen, spans in the
    # order given within them. Scopes with a schema URL, with attributes, without a version.
    for name, spans, scope in [
        ("1", second, "polar_kit.grpc"),
        ("2", first, "polar_kit.tracing"),
        ("3", second, "polar_kit.nats"),
        ("4", first, "polar_kit.grpc"),
        ("5", second, "polar_kit.grpc"),
        ("6", first, "polar_kit.tracing"),
    ]:
        tracer = spans.tracer(scope, None, SCHEMA, {"scope": scope})
        with tracer.start_as_current_span(name):
            pass
        batch += spans.finished()
        spans.exported.clear()
    assert_encoded_like_the_sdk(batch)
    request = ExportTraceServiceRequest.FromString(otlp.encode_spans(batch))
    layout = [
        [[span.name for span in scope.spans] for scope in resource.scope_spans]
        for resource in request.resource_spans
    ]
    assert layout == [[["1", "5"], ["3"]], [["2", "6"], ["4"]]]
    assert [r.schema_url for r in request.resource_spans] == ["", SCHEMA]


def test_equal_resources_and_scopes_are_one_group_as_in_the_sdk() -> None:
    # Distinct objects, equal (the SDK groups with dictionaries): the first one seen is written,
    # here with its attributes in another order than the second's.
    first = Spans(Resource({"service.name": "gateway", "host": "a"}))
    second = Spans(Resource({"host": "a", "service.name": "gateway"}))
    batch: list[ReadableSpan] = []
    for spans in (first, second, first):
        with spans.tracer().start_as_current_span("s"), spans.tracer().start_as_current_span("t"):
            pass
        batch += spans.finished()
        spans.exported.clear()
    assert_encoded_like_the_sdk(batch)
    assert len(ExportTraceServiceRequest.FromString(otlp.encode_spans(batch)).resource_spans) == 1
    # The second resource alone, after the first was encoded (and its header kept).
    assert_encoded_like_the_sdk(batch[2:4])


def test_spans_made_by_hand() -> None:
    # ReadableSpan as anyone may make it: no scope, no times, no status, no name, values the SDK
    # would have cleaned (ints beyond int64 and types it cannot encode: logged and left out,
    # here as there), mappings of any kind.
    made = [
        ReadableSpan("", LOCAL, instrumentation_scope=None, status=None),  # type: ignore[arg-type]
        ReadableSpan("no end", LOCAL, REMOTE, start_time=1),
        ReadableSpan(
            "odd values",
            LOCAL,
            resource=Resource({}),
            instrumentation_scope=InstrumentationScope("", None, None, None),
            attributes={
                "beyond int64": 2**64,
                "below int64": -(2**63) - 1,
                "set": {1, 2},  # type: ignore[dict-item]
                "list with a set": [1, {2}],  # type: ignore[list-item]
                "bytearray": bytearray(b"ab"),
                "mapping": MappingWrapper({"a": (1,)}),
                "lone surrogate": "\ud800",  # not UTF-8
                "kept": "yes",
                0: "a key not a str",  # type: ignore[dict-item]
            },
            events=[Event("e", {"x": 1}, timestamp=0)],
            start_time=0,
            end_time=2,
        ),
    ]
    for span in made:
        assert_encoded_like_the_sdk([span])
    assert_encoded_like_the_sdk(made)


class MappingWrapper(Mapping[str, AnyValue]):
    """A mapping that is neither a dict nor a BoundedAttributes (and has no copy())."""

    def __init__(self, items: dict[str, AnyValue]) -> None:
        self._items = items

    def __getitem__(self, key: str) -> AnyValue:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def test_attributes_in_a_mapping_without_copy() -> None:
    span = ReadableSpan("wrapped", LOCAL, attributes=MappingWrapper({"a": 1, "b": "two"}))
    assert_encoded_like_the_sdk([span])


def test_a_mixed_batch() -> None:
    batch = [
        *one_span(kind=SpanKind.SERVER, attributes=VALUES, parent=REMOTE),
        *one_span(kind=SpanKind.CONSUMER, links=[Link(REMOTE, {"n": 1})]),
        *one_span(limits=SpanLimits(max_span_attributes=1), attributes={"a": 1, "b": 2}),
        ReadableSpan("by hand", LOCAL, resource=OTHER_RESOURCE),
    ]
    spans = Spans(OTHER_RESOURCE)
    with spans.tracer("other", schema_url=SCHEMA).start_as_current_span("x") as span:
        span.add_event("e", {"k": "v"})
        span.set_status(Status(StatusCode.ERROR, "failed"))
    batch += spans.finished()
    batch += one_span(parent=LOCAL)
    assert_encoded_like_the_sdk(batch)
    assert_encoded_like_the_sdk(batch[::-1])
    assert_encoded_like_the_sdk([])


def test_the_gateways_root_span_grouped_with_the_sdks() -> None:
    # tracing_setup.RootSpan hands the processors a ReadableSpan of its own making: attributes
    # in a plain dict, not cleaned (a list stays a list), its own scope object, equal to the
    # provider's tracer's of that name; the SDK's encoder puts them in one ScopeSpans.
    spans = Spans()
    make = tracing_setup.RootSpan.maker(
        [SimpleSpanProcessor(spans.exported)], spans.provider.resource, "polar_kit"
    )
    root = make(TRACE_ID, 0x1234, "POST /integrations/github/webhook", {"http.route": "/x"})
    root.set_attributes({"polar.stream_sequence": 7, "list": [1, 2], "none": None})
    root.record_exception(ValueError("bad ☃"))
    root.set_status(Status(StatusCode.ERROR, "ValueError"))
    with spans.provider.get_tracer("polar_kit").start_as_current_span("sdk's"):
        root.end()
    batch = spans.finished()
    assert_encoded_like_the_sdk(batch)
    (resource,) = ExportTraceServiceRequest.FromString(otlp.encode_spans(batch)).resource_spans
    (scope,) = resource.scope_spans
    assert [span.name for span in scope.spans] == ["POST /integrations/github/webhook", "sdk's"]


class Collector:
    """A stand-in OTLP/gRPC collector: keeps each request it receives (raw bytes, no types)."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self._lock = threading.Lock()
        self._answer = ExportTraceServiceResponse().SerializeToString()

    def export(self, request: bytes, _: grpc.ServicerContext) -> bytes:
        with self._lock:
            self.requests.append(ExportTraceServiceRequest.FromString(request))
        return self._answer


@pytest.fixture
def collector() -> Iterator[tuple[Collector, int]]:
    received = Collector()
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    export: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
        received.export
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "opentelemetry.proto.collector.trace.v1.TraceService", {"Export": export}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield received, port
    finally:
        server.stop(None).wait()


def test_the_exporter_sends_to_a_collector(collector: tuple[Collector, int]) -> None:
    received, port = collector
    spans = Spans()
    tracer = spans.tracer()
    for name in ("first", "second", "third"):
        with tracer.start_as_current_span(name, kind=SpanKind.SERVER, attributes={"n": name}):
            pass
    batch = spans.finished()
    exporter = otlp.FastOTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}", insecure=True)
    try:
        assert exporter.export(batch) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    (request,) = received.requests
    assert request == sdk_encode_spans(batch)
    sent = [span for r in request.resource_spans for s in r.scope_spans for span in s.spans]
    assert [(span.name, span.trace_id, span.span_id) for span in sent] == [
        (
            span.name,
            span.context.trace_id.to_bytes(16, "big"),
            span.context.span_id.to_bytes(8, "big"),
        )
        for span in batch
    ]
