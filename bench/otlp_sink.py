"""A stand-in OTLP/gRPC trace collector for bench.tracing: it answers every export, as a
collector would, and counts the spans it received; nothing is stored.

    python -m bench.otlp_sink --port 4317

`/bench.OtlpSink/Count` (raw bytes, no message type) gives the counts so far as JSON:
spans by "<service.name> <span name>".
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
COUNT = "/bench.OtlpSink/Count"
SERVICE_NAME = "service.name"


class Sink:
    def __init__(self) -> None:
        self.spans: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._answer = pb.ExportTraceServiceResponse().SerializeToString()

    def export(self, request: bytes, _: grpc.ServicerContext) -> bytes:
        received = pb.ExportTraceServiceRequest.FromString(request)
        names: Counter[str] = Counter()
        for resource in received.resource_spans:
            attributes = resource.resource.attributes
            service = next((a.value.string_value for a in attributes if a.key == SERVICE_NAME), "?")
            for scope in resource.scope_spans:
                names.update(f"{service} {span.name}" for span in scope.spans)
        with self._lock:
            self.spans.update(names)
        return self._answer

    def count(self, _: bytes, __: grpc.ServicerContext) -> bytes:
        with self._lock:
            return json.dumps(self.spans).encode()


def serve(port: int) -> None:
    sink = Sink()
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    # Raw bytes in and out: no (de)serializers given.
    export: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(sink.export)
    count: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(sink.count)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(SERVICE, {"Export": export}),
            grpc.method_handlers_generic_handler("bench.OtlpSink", {"Count": count}),
        )
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(1).wait()


def spans_received(port: int) -> Counter[str]:
    """The sink's counts so far: spans by "<service> <span name>"."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(COUNT)
        return Counter(json.loads(call(b"", timeout=10)))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.otlp_sink", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    serve(parser.parse_args(argv).port)


if __name__ == "__main__":
    main()
