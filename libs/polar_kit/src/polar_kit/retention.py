"""Bounded storage: published outbox rows and processed marks are deleted once they can no
longer matter.

An outbox row matters until it is published and JetStream's duplicate window has passed (a
relay re-publishing it is then dropped); a processed mark matters while its message can be
delivered again: as long as its stream keeps it, plus the duplicate window. Both are kept
for `retention_seconds` (by default the longest stream retention, 30 days, plus the
duplicate window), then deleted in batches of `retention_batch_size`, one short transaction
each, so the tables are never locked for long. Every replica runs a Pruner; a transaction
advisory lock lets one of them prune at a time (the others skip that round).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from polar_db.models import OutboxEvent, ProcessedMessage
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from polar_kit.errors import is_transient
from polar_kit.outage import brief
from polar_kit.settings import ServiceSettings

log = structlog.get_logger(__name__)

# pg_try_advisory_xact_lock key: any constant the rest of the code does not use.
LOCK_KEY = 0x706F6C6172_01  # "polar" 01


class Pruner:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], settings: ServiceSettings
    ) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings

    async def run_once(self) -> dict[str, int] | None:
        """Prune everything old enough; rows deleted per table, or None when another
        replica is pruning."""
        cutoff = datetime.now(UTC) - timedelta(seconds=self._settings.retention_seconds)
        tables: list[tuple[str, tuple[Any, ...], sa.ColumnElement[bool]]] = [
            ("outbox_events", (OutboxEvent.id,), OutboxEvent.published_at < cutoff),
            (
                "processed_messages",
                (ProcessedMessage.consumer, ProcessedMessage.message_id),
                ProcessedMessage.processed_at < cutoff,
            ),
        ]
        deleted = {name: 0 for name, _, _ in tables}
        for name, keys, old in tables:
            while True:
                n = await self._delete_batch(keys, old)
                if n is None:
                    return None
                deleted[name] += n
                if n < self._settings.retention_batch_size:
                    break
        return deleted

    async def _delete_batch(self, keys: tuple[Any, ...], old: sa.ColumnElement[bool]) -> int | None:
        """One batch in its own short transaction; None if another replica holds the lock."""
        async with self._sessionmaker() as session, session.begin():
            locked = await session.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(LOCK_KEY)))
            if not locked:
                return None
            batch = (
                sa.select(*keys)
                .where(old)
                .limit(self._settings.retention_batch_size)
                .with_for_update(skip_locked=True)
            )
            table = keys[0].table
            result = await session.execute(
                sa.delete(table)
                .where(sa.tuple_(*keys).in_(batch))
                .execution_options(synchronize_session=False)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    async def run(self, stop: asyncio.Event) -> None:
        """Prune every `retention_interval_seconds` until `stop` is set."""
        while not stop.is_set():
            try:
                deleted = await self.run_once()
                if deleted and any(deleted.values()):
                    log.info("retention pruned", **deleted)
            except Exception as exc:
                if is_transient(exc):
                    log.warning("retention round skipped", error=brief(exc))
                else:
                    log.exception("retention round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._settings.retention_interval_seconds)
