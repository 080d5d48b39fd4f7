"""Prometheus metrics of the shared runtime: gRPC (server and client), consumers, outbox relay,
the parked stream. What each one means and the alerts built on them: docs/operations.md.

Hot paths resolve their label values once (`rpc_metrics`, `consumer_metrics`,
`outbox_metrics` are cached) and then only increment: a `labels()` lookup takes a lock and
hashes the values, which costs more than the increment itself. Every series an alert may
use is created at start-up (go-grpc-prometheus' "initialize metrics"), so a rate() starts
from zero instead of missing until the first event.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import prometheus_client
from google.protobuf import descriptor_pool
from prometheus_client import Counter, Gauge, Histogram

# The `_created` series (one per counter/histogram child) doubles the scrape for a timestamp
# no dashboard or alert here uses.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# --- gRPC: names, labels and buckets of go-grpc-prometheus, so its dashboards work ----------

GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")
Side = Literal["server", "client"]
GrpcType = Literal["unary", "client_stream", "server_stream", "bidi_stream"]


@dataclass(frozen=True)
class _GrpcFamilies:
    started: Counter
    handled: Counter
    received: Counter
    sent: Counter
    seconds: Histogram


def _grpc_families(side: Side, who: str) -> _GrpcFamilies:
    return _GrpcFamilies(
        started=Counter(f"grpc_{side}_started_total", f"RPCs started {who}.", GRPC_LABELS),
        handled=Counter(
            f"grpc_{side}_handled_total",
            f"RPCs completed {who}, by status code.",
            (*GRPC_LABELS, "grpc_code"),
        ),
        received=Counter(
            f"grpc_{side}_msg_received_total", f"Stream messages received {who}.", GRPC_LABELS
        ),
        sent=Counter(f"grpc_{side}_msg_sent_total", f"Stream messages sent {who}.", GRPC_LABELS),
        seconds=Histogram(
            f"grpc_{side}_handling_seconds",
            f"Time from the start of an RPC to its status {who}.",
            GRPC_LABELS,
        ),
    )


GRPC_SERVER = _grpc_families("server", "on the server")
GRPC_CLIENT = _grpc_families("client", "by the client (retries included)")


@dataclass
class RpcMetrics:
    """The series of one method, labels resolved once."""

    families: _GrpcFamilies
    labels: tuple[str, str, str]
    started: Counter = field(init=False)
    received: Counter = field(init=False)
    sent: Counter = field(init=False)
    seconds: Histogram = field(init=False)
    _handled: dict[str, Counter] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        f = self.families
        self.started = f.started.labels(*self.labels)
        self.received = f.received.labels(*self.labels)
        self.sent = f.sent.labels(*self.labels)
        self.seconds = f.seconds.labels(*self.labels)
        self.code("OK")

    def code(self, code: str) -> Counter:
        """`code`: a grpc.StatusCode name (NOT_FOUND); the label is Go's name (NotFound)."""
        child = self._handled.get(code)
        if child is None:
            go_name = go_code_name(code)
            child = self._handled[code] = self.families.handled.labels(*self.labels, go_name)
        return child

    def handled(self, code: str, seconds: float) -> None:
        self.code(code).inc()
        self.seconds.observe(seconds)


def go_code_name(code: str) -> str:
    """grpc-go's spelling of a status code (codes.Code.String()), which go-grpc-prometheus
    puts in `grpc_code`: NOT_FOUND -> NotFound, CANCELLED -> Canceled, OK -> OK."""
    if code in ("OK", "CANCELLED"):
        return "OK" if code == "OK" else "Canceled"
    return code.title().replace("_", "")


def split_method(full_method: str) -> tuple[str, str]:
    """`/pkg.Service/Method` -> (`pkg.Service`, `Method`)."""
    _, service, method = [*full_method.split("/"), "", ""][:3]
    return service or "unknown", method or "unknown"


@functools.cache
def rpc_metrics(side: Side, grpc_type: GrpcType, full_method: str) -> RpcMetrics:
    families = GRPC_SERVER if side == "server" else GRPC_CLIENT
    return RpcMetrics(families, (grpc_type, *split_method(full_method)))


def grpc_type_of(client_streaming: bool, server_streaming: bool) -> GrpcType:
    if client_streaming:
        return "bidi_stream" if server_streaming else "client_stream"
    return "server_stream" if server_streaming else "unary"


def init_grpc_metrics(side: Side, services: Iterable[str]) -> None:
    """Create every method's series of these services (by full name; those whose generated
    code is not loaded are left to be created by their first call)."""
    pool = descriptor_pool.Default()
    for name in services:
        try:
            methods = pool.FindServiceByName(name).methods
        except KeyError:
            continue
        for m in methods:
            kind = grpc_type_of(m.client_streaming, m.server_streaming)
            rpc_metrics(side, kind, f"/{name}/{m.name}")


# --- consumers ---------------------------------------------------------------------------------

OUTCOMES = ("acked", "duplicate", "retried", "parked", "skipped")
CONSUMER_MESSAGES = Counter(
    "polar_consumer_messages_total",
    "Messages handled by a consumer, by outcome (acked, duplicate, retried, parked, skipped).",
    ["consumer", "outcome"],
)
CONSUMER_HANDLING_SECONDS = Histogram(
    "polar_consumer_handling_seconds",
    "Time to handle one message, transaction included (in batch mode, its share of the batch).",
    ["consumer"],
)
CONSUMER_REDELIVERIES = Counter(
    "polar_consumer_redeliveries_total",
    "Messages received again (JetStream's delivery count above 1: a nak, an ack wait "
    "expired, a crash).",
    ["consumer"],
)
CONSUMER_PARKED = Counter(
    "polar_consumer_parked_total",
    "Messages given up on and copied to the parked stream for an operator.",
    ["consumer"],
)
CONSUMER_PENDING = Gauge(
    "polar_consumer_pending_messages",
    "Messages on the stream not yet delivered to the consumer (JetStream num_pending, sampled).",
    ["consumer"],
)
CONSUMER_ACK_PENDING = Gauge(
    "polar_consumer_ack_pending_messages",
    "Messages delivered and not yet acknowledged (JetStream num_ack_pending, sampled).",
    ["consumer"],
)


@dataclass
class ConsumerMetrics:
    name: str
    messages: dict[str, Counter] = field(init=False)
    seconds: Histogram = field(init=False)
    redeliveries: Counter = field(init=False)
    parked: Counter = field(init=False)
    pending: Gauge = field(init=False)
    ack_pending: Gauge = field(init=False)

    def __post_init__(self) -> None:
        self.messages = {o: CONSUMER_MESSAGES.labels(self.name, o) for o in OUTCOMES}
        self.seconds = CONSUMER_HANDLING_SECONDS.labels(self.name)
        self.redeliveries = CONSUMER_REDELIVERIES.labels(self.name)
        self.parked = CONSUMER_PARKED.labels(self.name)
        self.pending = CONSUMER_PENDING.labels(self.name)
        self.ack_pending = CONSUMER_ACK_PENDING.labels(self.name)

    def handled(self, outcome: str, count: int = 1) -> None:
        child = self.messages.get(outcome) or CONSUMER_MESSAGES.labels(self.name, outcome)
        child.inc(count)


@functools.cache
def consumer_metrics(name: str) -> ConsumerMetrics:
    return ConsumerMetrics(name)


PARKED_MESSAGES = Gauge(
    "polar_parked_messages",
    "Messages waiting on the parked stream, by the consumer that parked them (sampled).",
    ["consumer"],
)
PARKED_STREAM_MESSAGES = Gauge(
    "polar_parked_stream_messages",
    "Messages on the parked stream, all consumers (sampled).",
    ["stream"],
)
PARKED_STREAM_BYTES = Gauge(
    "polar_parked_stream_bytes", "Size of the parked stream in bytes (sampled).", ["stream"]
)

# --- outbox ------------------------------------------------------------------------------------

OUTBOX_PUBLISHED = Counter(
    "polar_outbox_published_total",
    "Outbox events published to JetStream and marked, by the service whose relay did it.",
    ["service"],
)
OUTBOX_ERRORS = Counter(
    "polar_outbox_publish_errors_total",
    "Outbox events whose publish failed (retried later).",
    ["service"],
)
OUTBOX_PUBLISH_SECONDS = Histogram(
    "polar_outbox_publish_seconds",
    "Time of one relay round: claim a batch, publish it, wait for every PubAck, mark it.",
    ["service"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OUTBOX_BACKLOG = Gauge(
    "polar_outbox_backlog",
    "Unpublished outbox rows (sampled; counted up to a cap, see docs/operations.md).",
    ["service", "table"],
)
OUTBOX_OLDEST_AGE = Gauge(
    "polar_outbox_oldest_age_seconds",
    "Age of the oldest unpublished outbox row; 0 when none is waiting (sampled).",
    ["service", "table"],
)


@dataclass
class OutboxMetrics:
    service: str
    table: str
    published: Counter = field(init=False)
    errors: Counter = field(init=False)
    seconds: Histogram = field(init=False)
    backlog: Gauge = field(init=False)
    oldest_age: Gauge = field(init=False)

    def __post_init__(self) -> None:
        self.published = OUTBOX_PUBLISHED.labels(self.service)
        self.errors = OUTBOX_ERRORS.labels(self.service)
        self.seconds = OUTBOX_PUBLISH_SECONDS.labels(self.service)
        self.backlog = OUTBOX_BACKLOG.labels(self.service, self.table)
        self.oldest_age = OUTBOX_OLDEST_AGE.labels(self.service, self.table)


@functools.cache
def outbox_metrics(service: str, table: str) -> OutboxMetrics:
    return OutboxMetrics(service, table)


READ_MODEL_GAPS = Counter(
    "polar_read_model_gaps_total",
    "Events of another service that skipped versions of what they describe (healed by the "
    "event's full state; see docs/consistency.md).",
    ["model"],
)


# --- serving -----------------------------------------------------------------------------------

_started: set[int] = set()


def start_metrics_server(port: int, host: str = "0.0.0.0") -> None:
    """Serve /metrics on `host:port` from a daemon thread; 0 disables it. Idempotent per port."""
    if port and port not in _started:
        prometheus_client.start_http_server(port, addr=host)
        _started.add(port)
