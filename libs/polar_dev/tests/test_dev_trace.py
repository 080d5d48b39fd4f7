"""polar_dev.trace: the spans a process writes (polar_kit.tracing_setup.JsonLinesExporter) printed
as a tree, found by delivery id, request id or trace id."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind
from polar_dev import trace
from polar_kit.tracing_setup import JsonLinesExporter


def write_spans(folder: Path) -> str:
    """A gateway and a consumer process, each with its own file; returns the trace id."""
    gateway = TracerProvider(resource=Resource.create({"service.name": "polar-gateway"}))
    gateway.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(folder / "gw.1.jsonl")))
    consumer = TracerProvider(resource=Resource.create({"service.name": "polar-repository"}))
    consumer.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(folder / "repo.2.jsonl")))
    tracer, other = gateway.get_tracer("t"), consumer.get_tracer("t")
    with (
        tracer.start_as_current_span("POST /webhook", kind=SpanKind.SERVER),
        tracer.start_as_current_span(
            "publish github.webhook.issues.opened",
            kind=SpanKind.PRODUCER,
            attributes={"polar.delivery": "d-1", "polar.request_id": "r-1"},
        ) as publish,
        other.start_as_current_span("process issues"),
    ):
        for _ in range(2):
            other.start_span("INSERT", attributes={"db.system": "postgresql"}).end()
    consumer.get_tracer("t").start_span("unrelated").end()
    gateway.shutdown()
    consumer.shutdown()
    return format(publish.get_span_context().trace_id, "032x")


def test_a_delivery_is_printed_as_a_tree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace_id = write_spans(tmp_path)
    for wanted in ("d-1", "r-1", trace_id):
        assert trace.main([wanted, "--dir", str(tmp_path)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].startswith(f"trace {trace_id}: 5 spans")
        assert [line.split("  [")[0] for line in lines[1:]] == [
            "└─ POST /webhook",
            "   └─ publish github.webhook.issues.opened",
            "      └─ process issues",
        ]
        assert "[polar-repository]" in lines[3]
        assert "(2 queries, " in lines[3]  # summed up on their parent's line


def test_an_unknown_id_is_said(tmp_path: Path) -> None:
    write_spans(tmp_path)
    assert trace.main(["nope", "--dir", str(tmp_path)]) == 1


def test_queries_can_be_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_spans(tmp_path)
    assert trace.main(["d-1", "--dir", str(tmp_path), "--queries"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.strip("│└├─ ").split("  [")[0] for line in lines[4:]] == ["INSERT", "INSERT"]
