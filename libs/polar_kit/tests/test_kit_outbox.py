from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import StringValue
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import PubAck
from polar_db.engine import create_engine, create_sessionmaker
from polar_db.models import ORGANIZATION, REPOSITORY, OutboxEvent
from polar_kit.metrics import OUTBOX_PUBLISHED
from polar_kit.nats import EVENTS
from polar_kit.outbox import LISTENER, OutboxRelay, record_event, record_events
from polar_kit.settings import ServiceSettings
from polar_kit.testing import count_messages, eventually
from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.usefixtures("clean_db")]

Sessionmaker = async_sessionmaker[AsyncSession]


async def record(sessionmaker: Sessionmaker, subject: str, n: int = 1) -> list[uuid.UUID]:
    async with sessionmaker() as session, session.begin():
        return [
            await record_event(session, subject, StringValue(value=f"v{i}"), source="/test")
            for i in range(n)
        ]


async def unpublished(sessionmaker: Sessionmaker) -> int:
    async with sessionmaker() as session:
        query = select(func.count()).where(OutboxEvent.published_at.is_(None))
        return int(await session.scalar(query) or 0)


async def test_record_events_in_bulk_keeps_order_and_the_transaction(
    sessionmaker: Sessionmaker,
) -> None:
    batch = [("polar.test.v1.created", StringValue(value=f"b{i}")) for i in range(5)]
    async with sessionmaker() as session:
        await record_events(session, batch, source="/test")
        await session.rollback()
    async with sessionmaker() as session, session.begin():
        ids = await record_events(session, batch, source="/test")
        assert await record_events(session, [], source="/test") == []
    async with sessionmaker() as session:
        rows = (await session.scalars(select(OutboxEvent).where(OutboxEvent.id.in_(ids)))).all()
        total = await session.scalar(select(func.count()).select_from(OutboxEvent))
    assert total == 5  # the rolled-back batch left nothing
    by_seq = sorted(rows, key=lambda r: r.seq)
    assert [r.id for r in by_seq] == ids
    assert [StringValue.FromString(r.payload).value for r in by_seq] == [f"b{i}" for i in range(5)]


async def test_record_event_is_part_of_the_transaction(sessionmaker: Sessionmaker) -> None:
    async with sessionmaker() as session:
        rolled_back = await record_event(
            session, "polar.test.v1.created", StringValue(value="x"), source="/test"
        )
        await session.rollback()
    async with sessionmaker() as session:
        committed = await record_event(
            session, "polar.test.v1.created", StringValue(value="y"), source="/test"
        )
        await session.commit()

    async with sessionmaker() as session:
        assert await session.get(OutboxEvent, rolled_back) is None
        row = await session.get(OutboxEvent, committed)
    assert row is not None
    assert row.type == "google.protobuf.StringValue"
    assert row.source == "/test"
    assert StringValue.FromString(row.payload).value == "y"
    assert row.published_at is None


async def test_relay_publishes_with_cloudevents_headers(
    sessionmaker: Sessionmaker, nc: Client, js: JetStreamContext, kit_settings: ServiceSettings
) -> None:
    subject = f"polar.test.v1.{uuid.uuid4().hex[:8]}"
    received: list[Msg] = []

    async def on_msg(msg: Msg) -> None:
        received.append(msg)

    sub = await nc.subscribe(kit_settings.nats_prefix + subject, cb=on_msg)
    ids = await record(sessionmaker, subject, 3)

    assert await OutboxRelay(sessionmaker, js, kit_settings).run_once() == 3

    async def all_received() -> bool:
        return len(received) == 3

    await eventually(all_received)
    await sub.unsubscribe()
    by_id = {m.headers["ce-id"]: m for m in received if m.headers}
    assert set(by_id) == {str(i) for i in ids}
    for event_id, msg in by_id.items():
        assert msg.headers is not None
        assert msg.headers["Nats-Msg-Id"] == event_id
        assert msg.headers["ce-specversion"] == "1.0"
        assert msg.headers["ce-type"] == "google.protobuf.StringValue"
        assert msg.headers["ce-source"] == "/test"
        assert msg.headers["ce-time"]
        assert msg.headers["content-type"] == "application/protobuf"
        assert StringValue.FromString(msg.data).value.startswith("v")
    assert await unpublished(sessionmaker) == 0


async def test_relay_sends_a_rows_extra_headers(
    sessionmaker: Sessionmaker, nc: Client, js: JetStreamContext, kit_settings: ServiceSettings
) -> None:
    subject = f"polar.test.v1.{uuid.uuid4().hex[:8]}"
    sub = await nc.subscribe(kit_settings.nats_prefix + subject)
    async with sessionmaker() as session, session.begin():
        event_id = await record_event(session, subject, StringValue(value="h"), source="/test")
        row = await session.get(OutboxEvent, event_id)
        assert row is not None
        # A row's own header may not pass for a CloudEvents attribute.
        row.headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
        row.headers |= {"X-Request-ID": "r-1", "ce-source": "/forged"}
    assert await OutboxRelay(sessionmaker, js, kit_settings).run_once() == 1
    msg = await sub.next_msg(timeout=5)
    await sub.unsubscribe()
    assert msg.headers is not None
    assert msg.headers["traceparent"].startswith("00-0af7")
    assert msg.headers["X-Request-ID"] == "r-1"
    assert msg.headers["ce-source"] == "/test"


async def test_each_service_relays_and_counts_its_own_events_only(
    database_url: str, js: JetStreamContext, kit_settings: ServiceSettings
) -> None:
    """Each service's relay reads its own schema's outbox (decision 0021): an event of the
    organization service is neither published nor counted by the repository service's."""
    makers = {
        owner: create_sessionmaker(create_engine(database_url, owner=owner))
        for owner in (ORGANIZATION, REPOSITORY)
    }
    subject = f"polar.test.v1.{uuid.uuid4().hex[:8]}"
    [theirs] = await record(makers[ORGANIZATION], subject)
    ours = await record(makers[REPOSITORY], subject, 2)
    counted = OUTBOX_PUBLISHED.labels(REPOSITORY)
    before = counted._value.get()
    relay = OutboxRelay(makers[REPOSITORY], js, kit_settings, service=REPOSITORY)
    published = 0
    while n := await relay.run_once():  # also what earlier tests left in this outbox
        published += n
    assert published >= 2
    assert counted._value.get() - before == published
    async with makers[REPOSITORY]() as session:
        mine = await session.scalars(select(OutboxEvent).where(OutboxEvent.id.in_(ours)))
        assert all(e.published_at is not None for e in mine)
        assert await session.get(OutboxEvent, theirs) is None  # not even visible
    async with makers[ORGANIZATION]() as session:
        row = await session.get(OutboxEvent, theirs)
        assert row is not None
        assert row.published_at is None
        await session.execute(delete(OutboxEvent).where(OutboxEvent.id == theirs))
        await session.commit()
    for maker in makers.values():
        await maker.kw["bind"].dispose()


async def test_relay_crashing_before_marking_republishes_and_jetstream_dedupes(
    sessionmaker: Sessionmaker,
    js: JetStreamContext,
    kit_settings: ServiceSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    subject = f"polar.test.v1.{uuid.uuid4().hex[:8]}"
    await record(sessionmaker, subject, 2)
    relay = OutboxRelay(sessionmaker, js, kit_settings)

    async def crash(*_: Any) -> None:
        raise RuntimeError("killed between publish and commit")

    monkeypatch.setattr(relay, "_mark", crash)
    with pytest.raises(RuntimeError):
        await relay.run_once()
    assert await unpublished(sessionmaker) == 2
    assert await count_messages(js, kit_settings, EVENTS, subject) == 2

    monkeypatch.undo()
    acks: list[PubAck] = []
    publish = relay._publish

    async def spy(event: OutboxEvent) -> PubAck:
        acks.append(await publish(event))
        return acks[-1]

    monkeypatch.setattr(relay, "_publish", spy)
    assert await relay.run_once() == 2
    assert all(ack.duplicate for ack in acks)
    assert await unpublished(sessionmaker) == 0
    assert await count_messages(js, kit_settings, EVENTS, subject) == 2


async def test_concurrent_relays_never_publish_an_event_twice(
    sessionmaker: Sessionmaker,
    js: JetStreamContext,
    kit_settings: ServiceSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    subject = f"polar.test.v1.{uuid.uuid4().hex[:8]}"
    ids = await record(sessionmaker, subject, 57)
    published: Counter[uuid.UUID] = Counter()

    def relay() -> OutboxRelay:
        r = OutboxRelay(sessionmaker, js, kit_settings)
        publish = r._publish

        async def spy(event: OutboxEvent) -> PubAck:
            published[event.id] += 1
            await asyncio.sleep(0.01)  # widen the window for overlap
            return await publish(event)

        monkeypatch.setattr(r, "_publish", spy)
        return r

    async def drain(r: OutboxRelay) -> None:
        while await unpublished(sessionmaker):
            await r.run_once()

    await asyncio.gather(*(drain(relay()) for _ in range(4)))
    assert set(published) == set(ids)
    assert max(published.values()) == 1
    assert await count_messages(js, kit_settings, EVENTS, subject) == len(ids)


async def test_rows_committed_out_of_seq_order_are_not_skipped(
    sessionmaker: Sessionmaker, js: JetStreamContext, kit_settings: ServiceSettings
) -> None:
    subject = f"polar.test.v1.{uuid.uuid4().hex[:8]}"
    relay = OutboxRelay(sessionmaker, js, kit_settings)
    async with sessionmaker() as slow:
        first = await record_event(slow, subject, StringValue(value="low seq"), source="/t")
        await slow.flush()  # takes the lower seq, commits later
        (second,) = await record(sessionmaker, subject)
        assert await relay.run_once() == 1
        await slow.commit()
    assert await relay.run_once() == 1

    async with sessionmaker() as session:
        rows = {e.id: e for e in await session.scalars(select(OutboxEvent))}
    assert rows[first].seq < rows[second].seq
    assert rows[first].published_at is not None
    assert await count_messages(js, kit_settings, EVENTS, subject) == 2


@pytest.mark.parametrize("lose_connection", [False, True])
async def test_relay_wakes_on_notify(
    sessionmaker: Sessionmaker,
    nc: Client,
    js: JetStreamContext,
    kit_settings: ServiceSettings,
    lose_connection: bool,
) -> None:
    subject = f"polar.test.v1.{uuid.uuid4().hex[:8]}"
    # Polling every minute: only NOTIFY can make this test pass in time.
    settings = kit_settings.model_copy(update={"outbox_poll_seconds": 60})
    received: list[Msg] = []

    async def on_msg(msg: Msg) -> None:
        received.append(msg)

    sub = await nc.subscribe(settings.nats_prefix + subject, cb=on_msg)
    stop = asyncio.Event()
    relay = OutboxRelay(sessionmaker, js, settings)
    task = asyncio.create_task(relay.run(stop))
    try:
        await asyncio.sleep(0.5)  # the LISTEN connection is up and the first round done
        if lose_connection:
            async with sessionmaker() as session:
                killed = (
                    await session.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE application_name = :name AND datname = current_database()"
                        ),
                        {"name": LISTENER},
                    )
                ).all()
            assert len(killed) == 1
            await asyncio.sleep(0.5)  # reconnected
        await record(sessionmaker, subject)

        async def got_it() -> bool:
            return len(received) == 1

        await eventually(got_it, within=5)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await sub.unsubscribe()
