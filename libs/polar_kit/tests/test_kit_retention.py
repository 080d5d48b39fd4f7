"""Retention of published outbox rows and processed marks (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from polar_db.models import OutboxEvent, ProcessedMessage
from polar_kit.retention import LOCK_KEY, Pruner
from polar_kit.settings import ServiceSettings
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.usefixtures("clean_db")]

Sessionmaker = async_sessionmaker[AsyncSession]


async def add(
    sessionmaker: Sessionmaker, n: int, *, age: timedelta, published: bool = True
) -> None:
    at = datetime.now(UTC) - age
    async with sessionmaker() as session, session.begin():
        await session.execute(
            sa.insert(OutboxEvent),
            [
                {
                    "id": uuid.uuid4(),
                    "subject": "polar.test.v1.x",
                    "type": "t",
                    "source": "/t",
                    "payload": b"",
                    "created_at": at,
                    "published_at": at if published else None,
                }
                for _ in range(n)
            ],
        )
        await session.execute(
            sa.insert(ProcessedMessage),
            [
                {"consumer": "c", "message_id": uuid.uuid4().hex, "processed_at": at}
                for _ in range(n)
            ],
        )


async def counts(sessionmaker: Sessionmaker) -> tuple[int, int, int]:
    async with sessionmaker() as session:
        outbox = await session.scalar(sa.select(sa.func.count()).select_from(OutboxEvent))
        unpublished = await session.scalar(
            sa.select(sa.func.count()).where(OutboxEvent.published_at.is_(None))
        )
        marks = await session.scalar(sa.select(sa.func.count()).select_from(ProcessedMessage))
    return int(outbox or 0), int(unpublished or 0), int(marks or 0)


async def test_old_rows_are_pruned_in_batches_unpublished_ones_never(
    sessionmaker: Sessionmaker, kit_settings: ServiceSettings
) -> None:
    assert kit_settings.retention_seconds > 30 * 24 * 3600 + 3600  # stream + duplicate window
    await add(sessionmaker, 2500, age=timedelta(days=40))
    await add(sessionmaker, 7, age=timedelta(days=40), published=False)
    await add(sessionmaker, 10, age=timedelta(days=20))
    pruner = Pruner(sessionmaker, kit_settings.model_copy(update={"retention_batch_size": 1000}))
    assert await pruner.run_once() == {"outbox_events": 2500, "processed_messages": 2507}
    # Unpublished rows stay whatever their age; recent rows stay.
    assert await counts(sessionmaker) == (17, 7, 10)
    assert await pruner.run_once() == {"outbox_events": 0, "processed_messages": 0}


async def test_one_replica_prunes_at_a_time(
    sessionmaker: Sessionmaker, kit_settings: ServiceSettings
) -> None:
    await add(sessionmaker, 5, age=timedelta(days=40))
    pruner = Pruner(sessionmaker, kit_settings)
    async with sessionmaker() as other, other.begin():
        assert await other.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(LOCK_KEY)))
        assert await pruner.run_once() is None  # another replica is at it
        assert await counts(sessionmaker) == (5, 0, 5)
    assert await pruner.run_once() == {"outbox_events": 5, "processed_messages": 5}


async def test_tables_stay_bounded_under_a_steady_load(
    sessionmaker: Sessionmaker, kit_settings: ServiceSettings
) -> None:
    """200 rows a second for 4 s, kept 0.5 s, pruned every 0.2 s by two replicas: the tables
    never hold much more than what 0.5 + 0.2 s of load writes."""
    settings = kit_settings.model_copy(
        update={
            "retention_seconds": 0.5,
            "retention_interval_seconds": 0.2,
            "retention_batch_size": 50,
        }
    )
    stop = asyncio.Event()
    replicas = [asyncio.create_task(Pruner(sessionmaker, settings).run(stop)) for _ in range(2)]
    largest = 0
    try:
        for _ in range(40):
            await add(sessionmaker, 20, age=timedelta())
            largest = max(largest, max(await counts(sessionmaker)))
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(*replicas)
    assert largest <= 300, largest  # 800 were written
