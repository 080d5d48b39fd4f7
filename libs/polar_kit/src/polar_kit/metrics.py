"""Prometheus metrics of the shared runtime (gRPC server, consumers, outbox relay)."""

from __future__ import annotations

import prometheus_client
from prometheus_client import Counter, Histogram

# Names and labels follow go-grpc-prometheus so standard dashboards work.
GRPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, by status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)
GRPC_HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time to handle an RPC on the server.",
    ["grpc_service", "grpc_method"],
)
CONSUMER_MESSAGES = Counter(
    "polar_consumer_messages_total",
    "Messages handled by a consumer, by outcome (acked, duplicate, retried, parked, skipped).",
    ["consumer", "outcome"],
)
CONSUMER_HANDLING_SECONDS = Histogram(
    "polar_consumer_handling_seconds",
    "Time to handle one message, transaction included.",
    ["consumer"],
)
OUTBOX_PUBLISHED = Counter(
    "polar_outbox_published_total", "Outbox events published to JetStream and marked."
)
OUTBOX_ERRORS = Counter(
    "polar_outbox_publish_errors_total", "Outbox events whose publish failed (retried later)."
)
READ_MODEL_GAPS = Counter(
    "polar_read_model_gaps_total",
    "Events of another service that skipped versions of what they describe (healed by the "
    "event's full state; see docs/consistency.md).",
    ["model"],
)

_started: set[int] = set()


def start_metrics_server(port: int, host: str = "0.0.0.0") -> None:
    """Serve /metrics on `host:port` from a daemon thread; 0 disables it. Idempotent per port."""
    if port and port not in _started:
        prometheus_client.start_http_server(port, addr=host)
        _started.add(port)
