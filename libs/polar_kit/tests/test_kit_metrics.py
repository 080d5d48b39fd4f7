"""The values behind the alerts: outbox backlog and age, a consumer's pending messages,
redeliveries and parked messages, the parked stream's gauges (polar_kit.sampler), and the
gRPC server metrics of a streaming RPC. Names and labels: tests/test_metrics_scrape.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from google.protobuf.wrappers_pb2 import StringValue
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.js import JetStreamContext
from polar_kit.consumer import Consumer, Delivery, Reject, Retry
from polar_kit.grpc.server import RunningServer, start_server
from polar_kit.metrics import go_code_name
from polar_kit.nats import PARKED, WEBHOOKS, publish, subject_for
from polar_kit.outbox import OutboxRelay, record_event
from polar_kit.sampler import MetricsSampler
from polar_kit.settings import ServiceSettings
from polar_kit.testing import eventually
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.usefixtures("clean_db")]

Sessionmaker = async_sessionmaker[AsyncSession]


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_outbox_backlog_and_age_are_sampled_and_cleared_by_the_relay(
    sessionmaker: Sessionmaker, js: JetStreamContext, kit_settings: ServiceSettings
) -> None:
    relay = OutboxRelay(sessionmaker, js, kit_settings, service="kit")
    labels = {"service": "kit", "table": "outbox_events"}
    async with sessionmaker() as session, session.begin():
        for i in range(3):
            await record_event(
                session, "polar.test.v1.created", StringValue(value=f"{i}"), source="/t"
            )
        # As if written 90 s ago: the age is the oldest row's, from the database's clock.
        await session.flush()
        await session.execute(text("UPDATE outbox_events SET created_at = now() - interval '90 s'"))
    await relay.sample_metrics()
    assert value("polar_outbox_backlog", **labels) == 3
    assert 90 <= value("polar_outbox_oldest_age_seconds", **labels) < 120

    published = value("polar_outbox_published_total", service="kit")
    rounds = value("polar_outbox_publish_seconds_count", service="kit")
    assert await relay.run_once() == 3
    await relay.sample_metrics()
    assert value("polar_outbox_backlog", **labels) == 0
    assert value("polar_outbox_oldest_age_seconds", **labels) == 0
    assert value("polar_outbox_published_total", service="kit") == published + 3
    assert value("polar_outbox_publish_seconds_count", service="kit") == rounds + 1


async def test_the_relay_is_labelled_by_its_service_by_default(
    sessionmaker: Sessionmaker, js: JetStreamContext, kit_settings: ServiceSettings
) -> None:
    class OrganizationSettings(ServiceSettings):
        pass

    settings = OrganizationSettings.model_validate(kit_settings.model_dump())
    await OutboxRelay(sessionmaker, js, settings).sample_metrics()
    labels = {"service": "organization", "table": "outbox_events"}
    assert REGISTRY.get_sample_value("polar_outbox_backlog", labels) == 0


async def send(js: JetStreamContext, settings: ServiceSettings, subject: str, body: bytes) -> None:
    await publish(js, subject_for(settings, subject), body, msg_id=uuid.uuid4().hex)


async def test_consumer_pending_redeliveries_and_parked(
    sessionmaker: Sessionmaker, js: JetStreamContext, kit_settings: ServiceSettings, token: str
) -> None:
    seen: list[Delivery] = []

    async def handler(session: AsyncSession, delivery: Delivery) -> None:
        seen.append(delivery)
        if delivery.data == b"bad":
            raise Reject("never")
        if delivery.num_delivered == 1:
            raise Retry("not yet", delay=0.1)

    subject = f"github.webhook.{token}.created"
    consumer = Consumer(
        token, WEBHOOKS, [subject], handler, sessionmaker=sessionmaker, js=js, settings=kit_settings
    )
    sampler = MetricsSampler([consumer], js, kit_settings)
    await consumer.setup()
    for body in (b"a", b"b", b"bad"):
        await send(js, kit_settings, subject, body)
    await sampler.sample()
    assert value("polar_consumer_pending_messages", consumer=token) == 3
    assert value("polar_parked_messages", consumer=token) == 0  # listed before it ever parks

    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:

        async def settled() -> bool:
            return len(seen) >= 5  # a and b twice (retried once), bad once

        await eventually(settled)
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert value("polar_consumer_redeliveries_total", consumer=token) == 2
    assert value("polar_consumer_parked_total", consumer=token) == 1
    assert value("polar_consumer_messages_total", consumer=token, outcome="retried") == 2
    assert value("polar_consumer_messages_total", consumer=token, outcome="acked") == 2
    assert value("polar_consumer_handling_seconds_count", consumer=token) == 5

    await sampler.sample()
    assert value("polar_consumer_pending_messages", consumer=token) == 0
    assert value("polar_consumer_ack_pending_messages", consumer=token) == 0
    assert value("polar_parked_messages", consumer=token) == 1
    stream = PARKED.stream_name(kit_settings.nats_prefix)
    assert value("polar_parked_stream_messages", stream=stream) >= 1
    assert value("polar_parked_stream_bytes", stream=stream) > 0

    # Replayed (deleted from the parked stream): back to 0, not left at its last value.
    await js.purge_stream(stream, subject=subject_for(kit_settings, f"parked.{token}"))
    await sampler.sample()
    assert value("polar_parked_messages", consumer=token) == 0


@pytest_asyncio.fixture(loop_scope="session")
async def running_server(
    sessionmaker: Sessionmaker, kit_settings: ServiceSettings
) -> AsyncIterator[RunningServer]:
    running = await start_server(
        port=0, services=[], sessionmaker=sessionmaker, settings=kit_settings, host="127.0.0.1"
    )
    yield running
    await running.stop(0)


async def test_grpc_server_metrics_of_a_streaming_rpc(running_server: RunningServer) -> None:
    """Health Watch: a server stream whose handler writes with context.write (the wrappers
    used to fail it with INTERNAL: they took every stream for an async generator)."""
    labels = {
        "grpc_type": "server_stream",
        "grpc_service": "grpc.health.v1.Health",
        "grpc_method": "Watch",
    }
    # Created at start-up, before any call.
    assert REGISTRY.get_sample_value("grpc_server_started_total", labels) is not None
    started = value("grpc_server_started_total", **labels)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running_server.port}") as channel:
        call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        first = await call.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        call.cancel()
    assert value("grpc_server_started_total", **labels) == started + 1
    assert value("grpc_server_msg_received_total", **labels) >= 1

    async def handled() -> bool:
        return value("grpc_server_handled_total", **labels, grpc_code="Canceled") >= 1

    await eventually(handled)


async def test_grpc_codes_are_spelled_as_grpc_go_does() -> None:
    names = {code.name: go_code_name(code.name) for code in grpc.StatusCode}
    assert names["OK"] == "OK"
    assert names["CANCELLED"] == "Canceled"
    assert names["NOT_FOUND"] == "NotFound"
    assert names["DEADLINE_EXCEEDED"] == "DeadlineExceeded"
    assert names["UNAUTHENTICATED"] == "Unauthenticated"
    assert names["DATA_LOSS"] == "DataLoss"
