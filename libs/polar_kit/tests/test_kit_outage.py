"""Consumers through database outages, poison messages, slow work and crashes (real PostgreSQL
and NATS).

The outage: the consumer's engine connects through asyncpg's real connect, except while the
test says the database is "starting up"; then the connect raises asyncpg's own
CannotConnectNowError (57P03), which SQLAlchemy wraps as it wraps the real one. Connections
in use are cut for real with pg_terminate_backend (57P01).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from google.protobuf.wrappers_pb2 import StringValue
from nats.js import JetStreamContext
from polar_db.engine import (
    asyncpg_dsn,
    create_engine,
    create_sessionmaker,
    server_settings,
    sqlalchemy_url,
)
from polar_db.models import REPOSITORY, ProcessedMessage
from polar_kit import parked, testing
from polar_kit.consumer import BatchHandler, Consumer, Delivery, Handler, Reject, Retry
from polar_kit.nats import EVENTS, WEBHOOKS, publish, subject_for
from polar_kit.outbox import OutboxRelay, record_events
from polar_kit.settings import ServiceSettings
from polar_kit.testing import count_messages, eventually
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.usefixtures("clean_db")]

Sessionmaker = async_sessionmaker[AsyncSession]


class Database:
    """A sessionmaker whose connects fail with 57P03 while `starting_up` is set."""

    def __init__(self, url: str) -> None:
        self.starting_up = False
        self.refused = 0
        dsn = asyncpg_dsn(url)

        async def connect(**_: Any) -> Any:
            if self.starting_up:
                self.refused += 1
                raise asyncpg.exceptions.CannotConnectNowError(
                    "the database system is not yet accepting connections"
                )
            return await asyncpg.connect(dsn, server_settings=server_settings(REPOSITORY, ""))

        # No pool: every transaction connects, as after a restart that dropped the pool.
        self.engine = create_async_engine(
            sqlalchemy_url(url), async_creator=connect, poolclass=NullPool
        )
        self.sessionmaker = create_sessionmaker(self.engine)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    yield db
    await db.engine.dispose()


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Every log line, rendered as a service renders it (JSON)."""
    with testing.log_lines() as lines:
        yield lines


@asynccontextmanager
async def running(
    name: str,
    subject: str,
    sessionmaker: Sessionmaker,
    js: JetStreamContext,
    settings: ServiceSettings,
    handler: Handler | None = None,
    batch_handler: BatchHandler | None = None,
) -> AsyncIterator[asyncio.Task[None]]:
    consumer = Consumer(
        name,
        WEBHOOKS,
        [subject],
        handler,
        batch_handler=batch_handler,
        sessionmaker=sessionmaker,
        js=js,
        settings=settings,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield task
    finally:
        stop.set()
        if not task.done():
            await asyncio.wait_for(task, 10)


async def send(
    js: JetStreamContext, settings: ServiceSettings, subject: str, body: bytes, msg_id: str
) -> None:
    await publish(js, subject_for(settings, subject), body, msg_id=msg_id)


async def marks(sessionmaker: Sessionmaker, consumer: str) -> set[str]:
    async with sessionmaker() as session:
        query = sa.select(ProcessedMessage.message_id).where(ProcessedMessage.consumer == consumer)
        return set(await session.scalars(query))


async def nothing_parked(js: JetStreamContext, settings: ServiceSettings, name: str) -> bool:
    return not await parked.list_parked(js, settings, name)


async def test_an_outage_parks_nothing_and_logs_a_few_lines(
    database: Database,
    database_url: str,
    sessionmaker: Sessionmaker,
    js: JetStreamContext,
    kit_settings: ServiceSettings,
    token: str,
    log_lines: list[str],
) -> None:
    """PostgreSQL restarts: connections cut (57P01), then 57P03 for much longer than the
    park budget (3 attempts, 0.1-0.5 s apart): every message goes through once it is back."""
    subject = f"github.webhook.{token}.created"
    seen: list[bytes] = []
    release = asyncio.Event()

    async def handler(session: AsyncSession, delivery: Delivery) -> None:
        await session.execute(sa.select(1))
        if delivery.data == b"slow" and not release.is_set():
            await release.wait()
            await session.execute(sa.text("SELECT 2"))  # its connection was terminated meanwhile
        seen.append(delivery.data)

    settings = kit_settings.model_copy(update={"outage_retry_max_seconds": 0.2})
    async with running(token, subject, database.sessionmaker, js, settings, handler):
        await send(js, settings, subject, b"slow", f"{token}-slow")
        await asyncio.sleep(0.5)  # the slow one is in a transaction now
        database.starting_up = True
        # A real 57P01 for the connection in use, by an administrator (a service's role may
        # neither see nor end other sessions).
        admin = create_engine(database_url)
        try:
            async with admin.connect() as conn:
                terminated = await conn.scalar(
                    sa.text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        " AND query LIKE 'SELECT 1%'"
                    )
                )
        finally:
            await admin.dispose()
        assert terminated == 1
        release.set()
        for i in range(20):
            await send(js, settings, subject, f"m{i}".encode(), f"{token}-{i}")
        await asyncio.sleep(3)  # far past 3 attempts of up to 0.5 s
        refused = database.refused
        assert refused >= 10
        database.starting_up = False

        async def all_in() -> bool:
            return len(await marks(sessionmaker, token)) == 21

        await eventually(all_in, within=10)
    assert sorted(seen) == sorted([b"slow"] + [f"m{i}".encode() for i in range(20)])
    assert await nothing_parked(js, settings, token)
    # One line when it starts, one when it ends (a summary every 30 s in between), never a
    # traceback, although the connect was refused `refused` times.
    outage = [json.loads(line) for line in log_lines if "database (consumer" in line]
    assert [o["event"] for o in outage] == [
        f"database (consumer {token}) unavailable, retrying",
        f"database (consumer {token}) available again",
    ], outage
    assert outage[1]["failures"] >= 10
    assert not [line for line in log_lines if "Traceback" in line or '"exception"' in line]


async def test_poison_is_parked_at_once_and_the_batch_goes_through(
    sessionmaker: Sessionmaker, js: JetStreamContext, kit_settings: ServiceSettings, token: str
) -> None:
    """Data that can never be stored (an integer out of range, a NUL in a text, JSON nested
    too deep) is parked on its first failure with the reason; the rest of its batch is
    applied, and the batch is not replayed again and again."""
    subject = f"github.webhook.{token}.created"
    async with scratch_table(sessionmaker, token):
        await _poison_is_parked(sessionmaker, js, kit_settings, token, subject)


@asynccontextmanager
async def scratch_table(sessionmaker: Sessionmaker, name: str) -> AsyncIterator[None]:
    """A table of the test's own, dropped after it (the database is the session's)."""
    async with sessionmaker() as session, session.begin():
        await session.execute(sa.text(f"CREATE TABLE {name} (n integer, title text)"))
    try:
        yield
    finally:
        async with sessionmaker() as session, session.begin():
            await session.execute(sa.text(f"DROP TABLE {name}"))


async def _poison_is_parked(
    sessionmaker: Sessionmaker,
    js: JetStreamContext,
    kit_settings: ServiceSettings,
    token: str,
    subject: str,
) -> None:
    calls: list[list[bytes]] = []

    async def store(session: AsyncSession, deliveries: list[Delivery]) -> Mapping[str, Reject]:
        calls.append([d.data for d in deliveries])
        for d in deliveries:
            value = json.loads(d.data)
            await session.execute(
                sa.text(f"INSERT INTO {token} (n, title) VALUES (:n, :title)"), value
            )
        return {}

    bodies = [
        b'{"n": 1, "title": "ok"}',
        b'{"n": 99999999999, "title": "out of range"}',
        b'{"n": 2, "title": "nul \\u0000 inside"}',
        b"[" * 5000 + b"]" * 5000,
        b'{"n": 3, "title": "ok too"}',
    ]
    for i, body in enumerate(bodies):
        await send(js, kit_settings, subject, body, f"{token}-{i}")
    async with running(token, subject, sessionmaker, js, kit_settings, batch_handler=store):

        async def three_parked() -> bool:
            return len(await parked.list_parked(js, kit_settings, token)) == 3

        await eventually(three_parked)
        await asyncio.sleep(1)  # room for wrong retries (retry delays are 0.1-0.5 s)
    by_id = {p.message_id: p for p in await parked.list_parked(js, kit_settings, token)}
    assert set(by_id) == {f"{token}-1", f"{token}-2", f"{token}-3"}
    assert all(p.attempts == "1" for p in by_id.values())
    assert "cannot be stored" in by_id[f"{token}-1"].error
    assert "22021" in by_id[f"{token}-2"].error  # character not in repertoire
    assert "RecursionError" in by_id[f"{token}-3"].error
    async with sessionmaker() as session:
        stored = list(await session.scalars(sa.text(f"SELECT n FROM {token} ORDER BY n")))
    assert stored == [1, 3]
    # The batch once, then each message alone once: nothing handled twice.
    assert len(calls[0]) == 5
    assert sorted(len(c) for c in calls[1:]) == [1] * 5


async def test_a_bug_after_a_long_outage_still_gets_its_attempts(
    database: Database, js: JetStreamContext, kit_settings: ServiceSettings, token: str
) -> None:
    """An outage does not count: a message failing (a bug) after one is retried, not parked."""
    subject = f"github.webhook.{token}.created"
    failures = [RuntimeError("flaky")]
    seen: list[int] = []

    async def handler(session: AsyncSession, delivery: Delivery) -> None:
        await session.execute(sa.select(1))
        seen.append(delivery.num_delivered)
        if failures:
            raise failures.pop()

    database.starting_up = True
    settings = kit_settings.model_copy(update={"outage_retry_max_seconds": 0.1})
    async with running(token, subject, database.sessionmaker, js, settings, handler):
        await send(js, settings, subject, b"x", f"{token}-x")
        await asyncio.sleep(2)
        database.starting_up = False

        async def done() -> bool:
            return len(seen) == 2

        await eventually(done)
    assert await nothing_parked(js, settings, token)
    assert database.refused >= 10


async def test_a_repeatedly_failing_message_does_not_take_new_batches_down(
    sessionmaker: Sessionmaker, js: JetStreamContext, kit_settings: ServiceSettings, token: str
) -> None:
    subject = f"github.webhook.{token}.created"
    calls: list[list[bytes]] = []

    async def handler(session: AsyncSession, deliveries: list[Delivery]) -> Mapping[str, Retry]:
        calls.append([d.data for d in deliveries])
        await asyncio.sleep(0.2)  # new messages pile up meanwhile, and the bug's redelivery
        if any(d.data == b"bug" for d in deliveries):
            raise RuntimeError("bug")
        return {}

    async with running(token, subject, sessionmaker, js, kit_settings, batch_handler=handler):
        await send(js, kit_settings, subject, b"bug", f"{token}-bug")
        for i in range(12):
            await asyncio.sleep(0.1)
            await send(js, kit_settings, subject, f"m{i}".encode(), f"{token}-{i}")

        async def parked_once() -> bool:
            return len(await parked.list_parked(js, kit_settings, token)) == 1

        await eventually(parked_once)
        await asyncio.sleep(0.5)
    assert len(await marks(sessionmaker, token)) == 12
    with_bug = [c for c in calls if b"bug" in c]
    assert len(with_bug) == kit_settings.consumer_max_attempts
    assert all(c == [b"bug"] for c in with_bug[1:])  # alone after its first failure


async def test_messages_of_a_dead_consumer_come_back_within_seconds(
    sessionmaker: Sessionmaker, js: JetStreamContext, kit_settings: ServiceSettings, token: str
) -> None:
    """A consumer dies (its task is gone without ack or nak, as with kill -9): another one
    gets its messages after ack_wait, which is short (the default)."""
    assert kit_settings.consumer_ack_wait_seconds <= 5
    subject = f"github.webhook.{token}.created"
    started = asyncio.Event()

    async def hang(session: AsyncSession, delivery: Delivery) -> None:
        started.set()
        await asyncio.sleep(3600)

    seen: list[float] = []

    async def record(session: AsyncSession, delivery: Delivery) -> None:
        seen.append(time.monotonic())

    async with running(token, subject, sessionmaker, js, kit_settings, hang) as dying:
        await send(js, kit_settings, subject, b"x", f"{token}-x")
        await asyncio.wait_for(started.wait(), 10)
        killed_at = time.monotonic()
        dying.cancel()  # no ack, no nak, no more in_progress
        async with running(token, subject, sessionmaker, js, kit_settings, record):

            async def redelivered() -> bool:
                return bool(seen)

            await eventually(redelivered, within=15)
    assert seen[0] - killed_at <= kit_settings.consumer_ack_wait_seconds + 1.5


async def test_long_work_is_kept_alive_past_ack_wait(
    sessionmaker: Sessionmaker, js: JetStreamContext, kit_settings: ServiceSettings, token: str
) -> None:
    subject = f"github.webhook.{token}.created"
    settings = kit_settings.model_copy(update={"consumer_ack_wait_seconds": 1})
    seen: list[int] = []

    async def slow(session: AsyncSession, delivery: Delivery) -> None:
        seen.append(delivery.num_delivered)
        await asyncio.sleep(3.5)

    async with running(token, subject, sessionmaker, js, settings, slow):
        await send(js, settings, subject, b"x", f"{token}-x")

        async def done() -> bool:
            return await marks(sessionmaker, token) == {f"{token}-x"}

        await eventually(done, within=10)
    assert seen == [1]  # never redelivered while it was being worked on


async def test_waiting_for_a_parent_outlasts_the_attempts_then_parks_after_the_time_budget(
    sessionmaker: Sessionmaker, js: JetStreamContext, kit_settings: ServiceSettings, token: str
) -> None:
    subject = f"github.webhook.{token}.created"
    settings = kit_settings.model_copy(update={"consumer_wait_max_seconds": 4})
    parent_known = asyncio.Event()
    attempts: dict[bytes, int] = {}

    async def handler(session: AsyncSession, delivery: Delivery) -> None:
        attempts[delivery.data] = delivery.num_delivered
        if delivery.data == b"child" and not parent_known.is_set():
            raise Retry("organization 1 is not known yet")
        if delivery.data == b"orphan":
            raise Retry("organization 2 is not known yet")

    async with running(token, subject, sessionmaker, js, settings, handler):
        await send(js, settings, subject, b"child", f"{token}-child")
        await send(js, settings, subject, b"orphan", f"{token}-orphan")

        async def many_attempts() -> bool:
            return attempts.get(b"child", 0) > 2 * settings.consumer_max_attempts

        await eventually(many_attempts, within=10)
        parent_known.set()

        async def orphan_parked() -> bool:
            return len(await parked.list_parked(js, settings, token)) == 1

        await eventually(orphan_parked, within=15)
    assert await marks(sessionmaker, token) == {f"{token}-child"}
    (orphan,) = await parked.list_parked(js, settings, token)
    assert orphan.message_id == f"{token}-orphan"
    assert orphan.error.startswith("still waiting after ")
    assert "organization 2 is not known yet" in orphan.error


async def test_the_outbox_relay_rides_out_an_outage_in_two_log_lines(
    database: Database,
    sessionmaker: Sessionmaker,
    js: JetStreamContext,
    kit_settings: ServiceSettings,
    log_lines: list[str],
) -> None:
    subject = f"polar.test.v1.{uuid.uuid4().hex[:8]}"
    async with sessionmaker() as session, session.begin():
        await record_events(
            session, [(subject, StringValue(value=str(i))) for i in range(5)], source="/t"
        )
    settings = kit_settings.model_copy(
        update={"outbox_poll_seconds": 0.05, "outage_retry_max_seconds": 0.1}
    )
    relay = OutboxRelay(database.sessionmaker, js, settings)
    database.starting_up = True
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await asyncio.sleep(2)
        assert database.refused >= 10
        assert await count_messages(js, settings, EVENTS, subject) == 0
        database.starting_up = False

        async def published() -> bool:
            return await count_messages(js, settings, EVENTS, subject) == 5

        await eventually(published)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    outage = [json.loads(line)["event"] for line in log_lines if "outbox relay" in line]
    assert outage == [
        "outbox relay: database or NATS unavailable, retrying",
        "outbox relay: database or NATS available again",
    ]
    assert not [line for line in log_lines if "Traceback" in line or '"exception"' in line]


async def test_stopping_during_an_outage_hands_the_messages_back(
    database: Database, js: JetStreamContext, kit_settings: ServiceSettings, token: str
) -> None:
    subject = f"github.webhook.{token}.created"
    seen: list[int] = []

    async def handler(session: AsyncSession, delivery: Delivery) -> None:
        await session.execute(sa.select(1))
        seen.append(delivery.num_delivered)

    database.starting_up = True
    async with running(token, subject, database.sessionmaker, js, kit_settings, handler) as task:
        await send(js, kit_settings, subject, b"x", f"{token}-x")
        await asyncio.sleep(1)
        stopping = time.monotonic()
    assert task.done()
    assert time.monotonic() - stopping < 3
    database.starting_up = False
    started = time.monotonic()
    async with running(token, subject, database.sessionmaker, js, kit_settings, handler):

        async def handled() -> bool:
            return bool(seen)

        await eventually(handled)
    assert time.monotonic() - started < kit_settings.consumer_ack_wait_seconds  # nak'd, not lost
    assert await nothing_parked(js, kit_settings, token)


async def test_messages_waiting_their_turn_are_kept_alive_too(
    sessionmaker: Sessionmaker, js: JetStreamContext, kit_settings: ServiceSettings, token: str
) -> None:
    """Two replicas; a fetch of several messages handled one at a time: the last ones wait
    for the others (1.5 s each), far beyond ack_wait (1 s), and are still not handed to the
    other replica meanwhile."""
    subject = f"github.webhook.{token}.created"
    settings = kit_settings.model_copy(update={"consumer_ack_wait_seconds": 1})
    calls: Counter[str] = Counter()

    async def slow(session: AsyncSession, delivery: Delivery) -> None:
        calls[delivery.message_id] += 1
        await asyncio.sleep(1.5)

    for i in range(4):  # waiting before the first replica starts: one fetch takes them all
        await send(js, settings, subject, f"{i}".encode(), f"{token}-{i}")
    async with running(token, subject, sessionmaker, js, settings, slow):
        await asyncio.sleep(0.3)
        second = running(token, subject, sessionmaker, js, settings, slow)
        async with second:  # fetching, ready to take what the first one lets expire

            async def done() -> bool:
                return len(await marks(sessionmaker, token)) == 4

            await eventually(done, within=20)
            info = await js.consumer_info(WEBHOOKS.stream_name(settings.nats_prefix), token)
    assert info.delivered.consumer_seq == 4  # 4 deliveries in all: none redelivered
    assert set(calls.values()) == {1}
