"""One webhook delivery, followed through the in-process services by its trace and its logs.

A signed installation.created delivery goes to the gateway; the organization and repository
consumers store it, the outbox relay publishes the events it caused, and a further consumer
of those events (standing for any next one) handles them. With an in-memory span exporter:
the spans form one trace, parent by parent, gateway -> JetStream -> consumer -> database ->
outbox -> relay -> JetStream -> next consumer. In the logs: every line about the delivery,
from every component, is found by its delivery id alone and carries the same trace id.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from polar_db.engine import create_engine, create_sessionmaker
from polar_db.models import ORGANIZATION, REPOSITORY
from polar_dev.infra import Infra
from polar_dev.pytest_plugin import delete_streams, temporary_database
from polar_gateway.settings import GatewaySettings
from polar_gateway.testing import running_gateway
from polar_kit import testing
from polar_kit.consumer import Consumer, Delivery
from polar_kit.grpc import Worker
from polar_kit.grpc.auth import GATEWAY, caller_key
from polar_kit.nats import EVENTS, connect, ensure_streams
from polar_kit.outbox import OutboxRelay
from polar_kit.testing import eventually
from polar_organization import app as organization_app
from polar_organization.settings import OrganizationSettings
from polar_repository import app as repository_app
from polar_repository.settings import RepositorySettings
from sqlalchemy.ext.asyncio import AsyncSession

WEBHOOK_SECRET = "tracing-test-webhook-secret"
OWNERS = (ORGANIZATION, REPOSITORY)
NEXT = "tracing-next"
REPOSITORY_CREATED = (
    "polar.repository.v1.repository_created"  # the consumer standing for the next one down the line
)


@dataclass
class Cluster:
    gateway_url: str
    exporter: InMemorySpanExporter
    next_seen: list[Delivery] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
async def cluster(polar_infra: Infra) -> AsyncIterator[Cluster]:
    prefix = f"t{secrets.token_hex(5)}."
    with testing.recorded_spans() as exporter, testing.log_lines() as logs:
        async with temporary_database(polar_infra.database_url) as database_url:
            env = {
                "database_url": database_url,
                "nats_url": polar_infra.nats_url,
                "nats_prefix": prefix,
                "consumer_retry_base_seconds": "0.2",
                "outbox_poll_seconds": "0.2",
                "internal_secret": secrets.token_hex(32),
                "token_encryption_keys": Fernet.generate_key().decode(),
                "dev_mode": "true",
            }
            org_settings = OrganizationSettings.model_validate(env)
            # Each service acts as its role in its own schema (decision 0021).
            engines = {owner: create_engine(database_url, owner=owner) for owner in OWNERS}
            makers = {owner: create_sessionmaker(engine) for owner, engine in engines.items()}
            repository_settings = RepositorySettings.model_validate(env)
            nc = await connect(org_settings, name="tracing-services")
            js = nc.jetstream()
            await ensure_streams(js, org_settings)
            seen: list[Delivery] = []

            async def next_one(session: AsyncSession, delivery: Delivery) -> None:
                seen.append(delivery)

            stop = asyncio.Event()
            workers: list[Worker] = [
                *organization_app.consumers(org_settings, js, makers[ORGANIZATION]),
                *repository_app.consumers(repository_settings, js, makers[REPOSITORY]),
                OutboxRelay(makers[ORGANIZATION], js, org_settings),
                OutboxRelay(makers[REPOSITORY], js, repository_settings),
                Consumer(
                    NEXT,
                    EVENTS,
                    ["polar.>"],
                    next_one,
                    sessionmaker=makers[ORGANIZATION],
                    js=js,
                    settings=org_settings,
                ),
            ]
            tasks = [asyncio.create_task(w.run(stop)) for w in workers]
            gateway_settings = GatewaySettings.model_validate(
                {k: v for k, v in env.items() if k != "internal_secret"}
                | {
                    "internal_caller_key": caller_key(env["internal_secret"], GATEWAY),
                    "github_webhook_secret": WEBHOOK_SECRET,
                    "session_secret": secrets.token_urlsafe(32),
                }
            )
            try:
                async with running_gateway(gateway_settings) as gateway:
                    yield Cluster(gateway.url, exporter, seen, logs)
            finally:
                stop.set()
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)
                await nc.close()
                for engine in engines.values():
                    await engine.dispose()
                await delete_streams(polar_infra.nats_url, prefix)


async def deliver(cluster: Cluster, event: str, payload: dict[str, Any]) -> tuple[str, str]:
    """Sends a signed delivery; returns its delivery id and the gateway's request id."""
    body = json.dumps(payload).encode()
    delivery = str(uuid.uuid4())
    signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    # Not traced here: GitHub sends no traceparent.
    with suppress_instrumentation():
        async with httpx.AsyncClient(base_url=cluster.gateway_url, timeout=15) as http:
            response = await http.post(
                "/api/v2/integrations/github/webhook",
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-GitHub-Event": event,
                    "X-GitHub-Delivery": delivery,
                    "X-Hub-Signature-256": signature,
                },
            )
    assert response.status_code == 202, response.text
    return delivery, response.headers["x-request-id"]


def load(github_fixtures: Path, name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((github_fixtures / "webhooks" / name).read_text())
    return payload


def attr(span: ReadableSpan, key: str) -> Any:
    return (span.attributes or {}).get(key)


async def test_a_delivery_is_one_trace_through_every_hop(
    cluster: Cluster, github_fixtures: Path
) -> None:
    payload = load(github_fixtures, "installation/created.payload.json")
    delivery, request_id = await deliver(cluster, "installation", payload)

    # The organization's and the repositories' events reach the next consumer, carrying the
    # delivery id, and its spans have ended (each after its handler, commit and ack).
    async def reached() -> bool:
        subjects = {
            d.subject for d in cluster.next_seen if d.headers.get("X-GitHub-Delivery") == delivery
        }
        ended = {
            s.name
            for s in cluster.exporter.get_finished_spans()
            if attr(s, "messaging.consumer.group.name") == NEXT
            and attr(s, "polar.delivery") == delivery
        }
        wanted = {"polar.organization.v1.created", REPOSITORY_CREATED}
        return wanted <= subjects and {f"process {w}" for w in wanted} <= ended

    await eventually(reached, within=30)
    spans = list(cluster.exporter.get_finished_spans())
    by_id = {s.context.span_id: s for s in spans}

    def parent(span: ReadableSpan) -> ReadableSpan | None:
        return by_id.get(span.parent.span_id) if span.parent else None

    def one(kind: SpanKind, name: str, **attributes: Any) -> ReadableSpan:
        found = [
            s
            for s in spans
            if s.kind == kind
            and s.name == name
            and all(attr(s, k) == v for k, v in attributes.items())
        ]
        assert found, f"no {kind.name} span {name!r} {attributes}"
        return found[0]

    # The gateway: the HTTP request is the trace's root and the message's producer (no
    # separate publish span, decision 0023).
    http = one(
        SpanKind.SERVER,
        "POST /integrations/github/webhook",
        **{"polar.delivery": delivery, "messaging.system": "nats"},
    )
    assert http.parent is None
    assert attr(http, "polar.request_id") == request_id
    assert attr(http, "messaging.destination.name") == "github.webhook.installation.created"
    assert isinstance(attr(http, "polar.stream_sequence"), int)
    assert attr(http, "http.response.status_code") == 202
    trace_id = http.context.trace_id

    # Each consumer of the webhook continues the trace as a child of the request.
    organization = one(
        SpanKind.CONSUMER,
        "process github.webhook.installation.created",
        **{"messaging.consumer.group.name": "organization-installations"},
    )
    repository = one(
        SpanKind.CONSUMER,
        "process github.webhook.installation.created",
        **{"messaging.consumer.group.name": "repository-webhooks"},
    )
    assert parent(organization) is http
    assert parent(repository) is http
    assert attr(organization, "polar.delivery") == delivery
    assert attr(organization, "polar.request_id") == request_id

    # Its database work is inside it (asyncpg's instrumentation).
    queries = [s for s in spans if s.kind == SpanKind.CLIENT and parent(s) is organization]
    assert any(attr(s, "db.system") == "postgresql" for s in queries), queries

    # The outbox row it wrote is published by the relay as its child ...
    relayed = one(SpanKind.PRODUCER, "publish polar.organization.v1.created")
    assert parent(relayed) is organization
    assert attr(relayed, "polar.delivery") == delivery
    # ... and the next consumer continues from the relay's publish.
    nxt = one(
        SpanKind.CONSUMER,
        "process polar.organization.v1.created",
        **{"messaging.consumer.group.name": NEXT},
    )
    assert parent(nxt) is relayed
    # The same from the repository consumer (batch mode), which waited for the organization:
    # its last attempt wrote the repositories' events.
    relayed = one(SpanKind.PRODUCER, f"publish {REPOSITORY_CREATED}")
    writer = parent(relayed)
    assert writer is not None
    assert attr(writer, "messaging.consumer.group.name") == "repository-webhooks"
    assert parent(writer) is http
    nxt = one(SpanKind.CONSUMER, f"process {REPOSITORY_CREATED}")
    assert parent(nxt) is relayed

    # One trace: every span about the delivery, and none of them elsewhere.
    about = [s for s in spans if attr(s, "polar.delivery") == delivery]
    assert {s.context.trace_id for s in about} == {trace_id}
    assert len(about) >= 5

    # The logs: found by the delivery id alone, every component, the same trace id.
    lines = [json.loads(line) for line in cluster.logs if delivery in line]
    hex_trace = format(trace_id, "032x")
    accepted = [x for x in lines if x["event"] == "webhook accepted"]
    assert len(accepted) == 1
    assert (
        accepted[0]
        | {
            "delivery": delivery,
            "github_event": "installation",
            "subject": "github.webhook.installation.created",
            "request_id": request_id,
            "trace_id": hex_trace,
        }
        == accepted[0]
    )
    assert isinstance(accepted[0]["stream_sequence"], int)
    handled = {x["consumer"] for x in lines if x["event"] == "message handled"}
    assert {"organization-installations", "repository-webhooks", NEXT} <= handled
    for line in lines:
        assert line.get("delivery") == delivery or delivery in line.get("deliveries", []), line
        assert line["trace_id"] == hex_trace, line


async def test_an_api_request_is_one_server_span(cluster: Cluster) -> None:
    """An API request served by FastAPI gets one SERVER span (the ASGI instrumentation's,
    around every middleware). FastAPI's own telemetry, on by default since 0.16x whenever a
    tracer provider is set, would add a second request span and one per dependency,
    endpoint and serialisation: four times the spans for the same request."""
    trace_id = secrets.randbits(128)
    traceparent = f"00-{trace_id:032x}-{secrets.randbits(64):016x}-01"
    with suppress_instrumentation():
        async with httpx.AsyncClient(base_url=cluster.gateway_url, timeout=15) as http:
            response = await http.get("/api/v2/users/me", headers={"traceparent": traceparent})
    assert response.status_code == 401, response.text

    def ended() -> list[ReadableSpan]:
        return [s for s in cluster.exporter.get_finished_spans() if s.context.trace_id == trace_id]

    async def any_ended() -> bool:
        return bool(ended())

    await eventually(any_ended, within=10)
    await asyncio.sleep(0.2)  # any span ending after the first would be in by now
    spans = ended()
    assert [(s.kind, s.name) for s in spans] == [(SpanKind.SERVER, "GET /api/v2/users/me")], spans
    assert attr(spans[0], "http.status_code") == 401  # (the instrumentation's attribute names)
