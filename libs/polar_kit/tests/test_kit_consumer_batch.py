"""Batch mode of polar_kit.consumer: one transaction per fetch, failures settled per message."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import pytest
from nats.js import JetStreamContext
from polar_db.models import ProcessedMessage
from polar_kit import parked
from polar_kit.consumer import BatchHandler, Consumer, Delivery, Reject, Retry
from polar_kit.nats import WEBHOOKS, publish, subject_for
from polar_kit.settings import ServiceSettings
from polar_kit.testing import eventually
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.usefixtures("clean_db")]

Sessionmaker = async_sessionmaker[AsyncSession]


class BatchRecorder:
    """A batch handler whose answers the test sets (by message body); records every call
    with the id of the transaction it ran in."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float, list[Delivery]]] = []
        self.retry: set[bytes] = set()
        self.reject: set[bytes] = set()
        self.poison: set[bytes] = set()

    async def __call__(
        self, session: AsyncSession, deliveries: list[Delivery]
    ) -> Mapping[str, Retry | Reject]:
        txid = int(await session.scalar(select(func.txid_current())) or 0)
        self.calls.append((txid, time.monotonic(), list(deliveries)))
        if any(d.data in self.poison for d in deliveries):
            raise RuntimeError("poison")
        failures: dict[str, Retry | Reject] = {}
        for d in deliveries:
            if d.data in self.retry:
                failures[d.message_id] = Retry("not yet", delay=0.3)
            elif d.data in self.reject:
                failures[d.message_id] = Reject("never")
        return failures

    def seen(self) -> list[bytes]:
        return [d.data for _, _, ds in self.calls for d in ds]

    async def count(self, n: int) -> None:
        async def reached() -> bool:
            return len(self.seen()) >= n

        await eventually(reached)


@asynccontextmanager
async def running(
    name: str,
    handler: BatchHandler,
    subject: str,
    sessionmaker: Sessionmaker,
    js: JetStreamContext,
    settings: ServiceSettings,
) -> AsyncIterator[Consumer]:
    consumer = Consumer(
        name,
        WEBHOOKS,
        [subject],
        batch_handler=handler,
        sessionmaker=sessionmaker,
        js=js,
        settings=settings,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield consumer
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def send(
    js: JetStreamContext, settings: ServiceSettings, subject: str, body: bytes, logical_id: str
) -> None:
    # A fresh Nats-Msg-Id each time: the copies are separate stream messages (a redelivery
    # by GitHub) that carry the same logical id.
    await publish(
        js,
        subject_for(settings, subject),
        body,
        msg_id=uuid.uuid4().hex,
        headers={"Polar-Message-Id": logical_id},
    )


async def marks(sessionmaker: Sessionmaker, consumer: str) -> set[str]:
    async with sessionmaker() as session:
        query = select(ProcessedMessage.message_id).where(ProcessedMessage.consumer == consumer)
        return set(await session.scalars(query))


async def test_needs_exactly_one_handler(
    js: JetStreamContext, kit_settings: ServiceSettings
) -> None:
    async def single(session: AsyncSession, delivery: Delivery) -> None: ...

    recorder = BatchRecorder()
    common = {"sessionmaker": None, "js": js, "settings": kit_settings}
    with pytest.raises(ValueError, match="exactly one"):
        Consumer("x", WEBHOOKS, ["a"], **common)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exactly one"):
        Consumer("x", WEBHOOKS, ["a"], single, batch_handler=recorder, **common)  # type: ignore[arg-type]


async def test_one_transaction_per_fetch_and_duplicates_skipped(
    sessionmaker: Sessionmaker, js: JetStreamContext, kit_settings: ServiceSettings, token: str
) -> None:
    handler = BatchRecorder()
    subject = f"github.webhook.{token}.created"
    # Published before the consumer starts, so the first fetch takes them all; "m1" twice in
    # the same fetch.
    for i in range(20):
        await send(js, kit_settings, subject, f"{i}".encode(), f"m{i}")
    await send(js, kit_settings, subject, b"1", "m1")
    async with running(token, handler, subject, sessionmaker, js, kit_settings):
        await handler.count(20)
        # Redelivered after it was handled, in a later fetch.
        await send(js, kit_settings, subject, b"2", "m2")
        await send(js, kit_settings, subject, b"new", "m-new")
        await handler.count(21)
        await asyncio.sleep(0.5)  # room for a wrong extra call
    assert handler.seen() == [f"{i}".encode() for i in range(20)] + [b"new"]
    assert len(handler.calls) == 2  # one per fetch, each in its own transaction
    assert handler.calls[0][0] != handler.calls[1][0]
    assert await marks(sessionmaker, token) == {f"m{i}" for i in range(20)} | {"m-new"}


async def test_retry_of_one_while_the_others_commit(
    sessionmaker: Sessionmaker, js: JetStreamContext, kit_settings: ServiceSettings, token: str
) -> None:
    handler = BatchRecorder()
    handler.retry = {b"later"}
    subject = f"github.webhook.{token}.created"
    for body in (b"a", b"later", b"b"):
        await send(js, kit_settings, subject, body, body.decode())
    await send(js, kit_settings, subject, b"later", "later")  # a copy shares the retry
    async with running(token, handler, subject, sessionmaker, js, kit_settings):
        await handler.count(3)
        assert await marks(sessionmaker, token) == {"a", "b"}  # later's mark was removed
        handler.retry = set()
        await handler.count(4)
        await asyncio.sleep(0.5)
    (_, t1, first), *rest = handler.calls
    assert [d.data for d in first] == [b"a", b"later", b"b"]
    retried = [d for _, _, ds in rest for d in ds]
    # The original and its copy are both redelivered; whichever comes first applies it.
    assert [d.data for d in retried] == [b"later"]
    assert rest[0][1] - t1 >= 0.25  # the Retry's delay
    assert await marks(sessionmaker, token) == {"a", "b", "later"}


async def test_a_raising_batch_falls_back_to_one_by_one_and_parks_the_poison(
    sessionmaker: Sessionmaker, js: JetStreamContext, kit_settings: ServiceSettings, token: str
) -> None:
    handler = BatchRecorder()
    handler.poison = {b"poison"}
    handler.reject = {b"bad"}
    subject = f"github.webhook.{token}.created"
    for body in (b"a", b"poison", b"b", b"bad"):
        await send(js, kit_settings, subject, body, body.decode())
    async with running(token, handler, subject, sessionmaker, js, kit_settings):

        async def both_parked() -> bool:
            return len(await parked.list_parked(js, kit_settings, token)) == 2

        await eventually(both_parked)
    # The batch failed as a whole, then each message ran alone: a and b once each, applied;
    # the poison's later deliveries come alone (a batch of one is not run twice).
    assert [d.data for d in handler.calls[0][2]] == [b"a", b"poison", b"b", b"bad"]
    singles = [ds for _, _, ds in handler.calls[1:]]
    assert all(len(ds) == 1 for ds in singles)
    alone = [ds[0].data for ds in singles]
    assert alone.count(b"a") == alone.count(b"b") == alone.count(b"bad") == 1
    assert alone.count(b"poison") == kit_settings.consumer_max_attempts
    assert await marks(sessionmaker, token) == {"a", "b"}
    by_id = {p.message_id: p for p in await parked.list_parked(js, kit_settings, token)}
    assert by_id["bad"].error == "rejected: never"
    assert by_id["bad"].attempts == "1"
    assert "RuntimeError('poison')" in by_id["poison"].error


async def test_returned_reject_parks_without_touching_the_rest(
    sessionmaker: Sessionmaker, js: JetStreamContext, kit_settings: ServiceSettings, token: str
) -> None:
    handler = BatchRecorder()
    handler.reject = {b"bad"}
    subject = f"github.webhook.{token}.created"
    for body in (b"a", b"bad", b"b"):
        await send(js, kit_settings, subject, body, body.decode())
    async with running(token, handler, subject, sessionmaker, js, kit_settings):

        async def parked_one() -> bool:
            return len(await parked.list_parked(js, kit_settings, token)) == 1

        await eventually(parked_one)
        await asyncio.sleep(0.3)
    assert len(handler.calls) == 1
    assert await marks(sessionmaker, token) == {"a", "b"}
