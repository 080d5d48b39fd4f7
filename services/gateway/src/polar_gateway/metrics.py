"""Prometheus metrics of the gateway, served at /metrics (its gRPC client metrics are
polar_kit.metrics'; the table of all: docs/operations.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "polar_gateway_http_requests_total",
    "HTTP requests answered, by route template and status.",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "polar_gateway_http_request_duration_seconds",
    "Time to answer an HTTP request (to the end of the body; streams excluded).",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WEBHOOKS = Counter(
    "polar_gateway_webhooks_total",
    "Webhook deliveries, by outcome (accepted, duplicate, ping, rejected, unavailable).",
    ["outcome"],
)
STREAM_CLIENTS = Gauge("polar_gateway_stream_clients", "Open live-stream (SSE) connections.")
STREAM_EVENTS = Counter("polar_gateway_stream_events_total", "Events sent to live-stream clients.")
STREAM_ENDED = Counter(
    "polar_gateway_stream_ended_total",
    "Live streams ended, by reason (disconnected, slow, feed lost, signed out, removed, "
    "revoked, expired, ended); `slow`: a client too slow to read, dropped.",
    ["reason"],
)
STREAM_END_REASONS = (
    "disconnected",
    "slow",
    "feed lost",
    "signed out",
    "removed",
    "revoked",
    "expired",
    "ended",
)
for _reason in STREAM_END_REASONS:  # every series from the start: rate() has a zero to start
    STREAM_ENDED.labels(_reason)
