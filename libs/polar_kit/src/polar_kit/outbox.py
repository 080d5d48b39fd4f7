"""Transactional outbox: events are written with the state change and relayed to JetStream.

record_event() inserts a row in the caller's transaction, so the event exists if and only if
the change committed. OutboxRelay publishes unpublished rows and marks them. It claims rows
by `published_at IS NULL` (not a high-water mark: a row with a lower seq may commit after a
higher one) with FOR UPDATE SKIP LOCKED, so every replica can run a relay without two of
them publishing the same row. A relay that dies after publishing but before marking leaves
the rows unpublished; the next run publishes them again with the same Nats-Msg-Id and
JetStream's duplicate window drops the copies.

Each service has its own outbox table in its own schema (decision 0021; the connection's
search_path finds it), so a relay publishes, counts and fails on its own service's events
only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import asyncpg
import structlog
from google.protobuf.message import Message
from nats.js import JetStreamContext
from nats.js.api import PubAck
from polar_db.engine import asyncpg_dsn
from polar_db.models import OutboxEvent
from sqlalchemy import Table, func, insert, literal, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from polar_kit.errors import is_transient
from polar_kit.metrics import outbox_metrics
from polar_kit.nats import publish, subject_for
from polar_kit.outage import Outage
from polar_kit.settings import ServiceSettings
from polar_kit.tracing import outgoing_headers, relaying, untraced_task

log = structlog.get_logger(__name__)

CHANNEL = "polar_outbox"
LISTENER = "polar-outbox-listen"  # application_name of the LISTEN connection
CONTENT_TYPE = "application/protobuf"


async def record_event(
    session: AsyncSession, subject: str, message: Message, *, source: str
) -> uuid.UUID:
    """Add `message` to the outbox in the session's transaction; returns the event id.

    `subject` is logical (`polar.organization.v1.created`); the relay adds the NATS prefix.
    `source` is the CloudEvents source, e.g. `/polar/organization`. No round trip here: the
    row is inserted with the session's next flush, batched with the other pending rows.
    """
    event = OutboxEvent(
        id=uuid.uuid4(),
        subject=subject,
        type=message.DESCRIPTOR.full_name,
        source=source,
        payload=message.SerializeToString(),
        headers=outgoing_headers(),
    )
    session.add(event)
    session.info[_NOTIFY] = True
    return event.id


async def record_events(
    session: AsyncSession,
    events: Iterable[tuple[str, Message] | tuple[str, Message, Mapping[str, str] | None]],
    *,
    source: str,
) -> list[uuid.UUID]:
    """Many events in one multi-row INSERT (batch upserts, webhook batches, syncs); returns
    their ids in order, which is also their publish (seq) order. An event may name the
    headers of the message it comes from (a batch's): it then carries that message's
    correlation and trace rather than the batch's (tracing.outgoing_headers)."""
    ids = []
    rows = []
    common = outgoing_headers()  # one context for the batch
    for subject, message, *origin in events:
        headers = outgoing_headers(origin=origin[0]) if origin and origin[0] else common
        ids.append(uuid.uuid4())
        rows.append(
            {
                "id": ids[-1],
                "subject": subject,
                "type": message.DESCRIPTOR.full_name,
                "source": source,
                "payload": message.SerializeToString(),
                "headers": headers,
            }
        )
    if rows:
        await session.execute(insert(OutboxEvent), rows)
        session.info[_NOTIFY] = True
    return ids


# One NOTIFY per transaction that recorded events, sent just before its COMMIT (so it is
# delivered on commit, dropped on rollback). NOTIFY takes a server-wide lock at commit, so
# sending it once per transaction rather than once per event matters under load.
_NOTIFY = "polar_outbox_notify"


@sa_event.listens_for(Session, "before_commit")
def _notify_relays(session: Session) -> None:
    if session.info.pop(_NOTIFY, False):
        session.execute(select(func.pg_notify(CHANNEL, "")))


@sa_event.listens_for(Session, "after_soft_rollback")
def _forget_notify(session: Session, previous_transaction: object) -> None:
    session.info.pop(_NOTIFY, None)


def cloudevent_headers(event: OutboxEvent) -> dict[str, str]:
    """CloudEvents NATS protocol binding, binary mode: attributes as `ce-` headers."""
    return {
        "ce-specversion": "1.0",
        "ce-id": str(event.id),
        "ce-type": event.type,
        "ce-source": event.source,
        "ce-time": event.created_at.isoformat(),
        "content-type": CONTENT_TYPE,
    }


class NotPublished(Exception):
    """Some events of a round were not published (the first error is the cause)."""


BACKLOG_COUNT_CAP = 1_000_000  # a sample counts at most this many rows (an index-only scan)


async def outbox_backlog(session: AsyncSession, table: Table) -> tuple[int, float]:
    """Unpublished rows of an outbox `table` (up to BACKLOG_COUNT_CAP) and the age in seconds
    of the oldest (0 if none): two walks of the partial index of unpublished rows."""
    unpublished = table.c.published_at.is_(None)
    capped = select(literal(1)).where(unpublished).limit(BACKLOG_COUNT_CAP).subquery()
    count = await session.scalar(select(func.count()).select_from(capped))
    oldest = await session.scalar(
        select(func.extract("epoch", func.now() - table.c.created_at))
        .where(unpublished)
        .order_by(table.c.seq)
        .limit(1)
    )
    return int(count or 0), max(float(oldest or 0), 0.0)


def _service_of(settings: ServiceSettings) -> str:
    # OrganizationSettings -> "organization": the metrics label, with no new argument.
    return type(settings).__name__.removesuffix("Settings").lower() or "service"


class OutboxRelay:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        js: JetStreamContext,
        settings: ServiceSettings,
        *,
        service: str | None = None,
    ) -> None:
        """`service` labels the metrics (default: from the settings class's name)."""
        self._sessionmaker = sessionmaker
        self._table: Table = OutboxEvent.__table__  # type: ignore[assignment]
        self._metrics = outbox_metrics(service or _service_of(settings), self._table.fullname)
        self._js = js
        self._settings = settings
        self._batch_size = settings.outbox_batch_size
        self._wake = asyncio.Event()
        self._outage = Outage(
            "outbox relay: database or NATS",
            base=settings.outbox_poll_seconds,
            cap=settings.outage_retry_max_seconds,
        )
        self._listen_outage = Outage(
            "outbox LISTEN connection",
            base=settings.outbox_poll_seconds,
            cap=settings.outage_retry_max_seconds,
        )

    async def run_once(self) -> int:
        """Publish one batch of unpublished events; returns how many were published."""
        start = time.perf_counter()
        async with self._sessionmaker() as session, session.begin():
            events = (
                await session.scalars(
                    select(OutboxEvent)
                    .where(OutboxEvent.published_at.is_(None))
                    .order_by(OutboxEvent.seq)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not events:
                return 0
            results = await asyncio.gather(
                *(self._publish(e) for e in events), return_exceptions=True
            )
            published = [
                e.id for e, r in zip(events, results, strict=True) if isinstance(r, PubAck)
            ]
            errors = [r for r in results if isinstance(r, BaseException)]
            await self._mark(session, published)
        self._metrics.seconds.observe(time.perf_counter() - start)
        self._metrics.published.inc(len(published))
        if errors:
            # One error for the round (not one line per event): NATS down fails them all.
            self._metrics.errors.inc(len(errors))
            raise NotPublished(f"{len(errors)} outbox events not published") from errors[0]
        return len(published)

    async def sample_metrics(self) -> None:
        """Backlog gauges (polar_kit.sampler): what waits to be published, and since when."""
        async with self._sessionmaker() as session:
            count, age = await outbox_backlog(session, self._table)
        self._metrics.backlog.set(count)
        self._metrics.oldest_age.set(age)

    async def _publish(self, event: OutboxEvent) -> PubAck:
        headers = {**(event.headers or {}), **cloudevent_headers(event)}
        with relaying(event.subject, event.headers, headers):
            return await publish(
                self._js,
                subject_for(self._settings, event.subject),
                event.payload,
                msg_id=str(event.id),
                headers=headers,
            )

    async def _mark(self, session: AsyncSession, ids: Sequence[uuid.UUID]) -> None:
        if ids:
            await session.execute(
                update(OutboxEvent).where(OutboxEvent.id.in_(ids)).values(published_at=func.now())
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set; the batch in hand is finished first."""
        untraced_task()  # its polls and claims are no trace; each publish is (relaying)
        listener = asyncio.create_task(self._listen(stop), name="outbox-listen")
        failures = 0
        try:
            while not stop.is_set():
                # Cleared before draining: a NOTIFY arriving meanwhile triggers another round.
                self._wake.clear()
                try:
                    while await self.run_once() >= self._batch_size and not stop.is_set():
                        pass
                    failures = 0
                    self._outage.recovered()
                except Exception as exc:
                    if is_transient(exc):  # logged once, then summarised
                        await _wait_any(stop, timeout=self._outage.failed(exc))
                        continue
                    failures += 1
                    log.exception("outbox relay round failed", failures=failures)
                timeout = self._settings.outbox_poll_seconds * min(2**failures, 30)
                await _wait_any(self._wake, stop, timeout=timeout)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _listen(self, stop: asyncio.Event) -> None:
        """LISTEN on a dedicated connection, re-established when lost. Polling covers gaps."""
        dsn = asyncpg_dsn(self._settings.database_url)
        while not stop.is_set():
            conn: Any = None
            try:
                conn = await asyncpg.connect(dsn, server_settings={"application_name": LISTENER})
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, lambda *_a: self._wake.set())
                self._wake.set()  # NOTIFYs may have been missed while disconnected
                self._listen_outage.recovered()
                while not (stop.is_set() or lost.is_set()):
                    await _wait_any(lost, stop, timeout=30)
                    if not (stop.is_set() or lost.is_set()):
                        # A dead TCP connection goes unnoticed until we use it.
                        await conn.fetchval("SELECT 1", timeout=10)
            except Exception as exc:
                await _wait_any(stop, timeout=self._listen_outage.failed(exc))
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)


async def _wait_any(*events: asyncio.Event, timeout: float) -> None:  # noqa: ASYNC109
    tasks = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
