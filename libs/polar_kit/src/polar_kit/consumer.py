"""Durable JetStream pull consumer with idempotent handling, bounded retries and parking.

For each message, one database transaction records (consumer, message id) in
processed_messages and runs the handler; commit, then ack. A redelivery of a handled message
finds its row and is only acked, so the effect happens once. Failures are retried with
backoff up to `consumer_max_attempts` deliveries, then the message is parked on the PARKED
stream for an operator (see polar_kit.parked) instead of being retried forever or dropped.

Failures are told apart (polar_kit.errors.classify), and each kind has its own budget:
- an outage (database or NATS unavailable, deadlock...) spends none: the consumer keeps the
  messages in hand (telling JetStream it is still working on them) and tries again with
  capped backoff for as long as the outage lasts, logging it once and then a summary;
- a Retry ("not yet": the parent organization or repository is not known yet) is retried
  until `consumer_wait_max_seconds` after the message was accepted, then parked;
- data that can never be stored (a Reject, a value out of range, a NUL in a text, JSON too
  deep) is parked at once with the reason;
- anything else (a bug) is retried up to `consumer_max_attempts` failures, then parked. The
  failures are counted by this process, not by JetStream's delivery count, which outages and
  crashes inflate.

Batch mode (`batch_handler=`): one transaction per fetch instead of per message. The marks of
the whole fetch go in with one INSERT .. ON CONFLICT DO NOTHING RETURNING (what comes back
is new; the rest are duplicates), the handler gets the new deliveries at once and answers
which ones it did not apply (Retry / Reject), their marks are deleted, and everything
commits once before each message is acked, retried or parked. If the handler raises, the
batch rolls back and its messages are handled one by one, so a poison message is isolated
and parked as in single mode while the others still go through; a message that failed alone
is handled alone again when it comes back, so it does not drag a new batch with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import nats.errors
import nats.js.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from polar_db.models import ProcessedMessage
from sqlalchemy import Table, delete
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from polar_kit.errors import PERMANENT, TRANSIENT, classify
from polar_kit.metrics import consumer_metrics
from polar_kit.nats import PARKED, StreamSpec, publish, strip_prefix, subject_for, subject_matches
from polar_kit.outage import Outage, brief
from polar_kit.settings import ServiceSettings
from polar_kit.tracing import DELIVERY, consuming, consuming_batch, log_fields

log = structlog.get_logger(__name__)

# Where the logical message id is looked up, first match wins. Polar-Message-Id survives a
# replay from the parked stream (which needs a fresh Nats-Msg-Id to pass JetStream dedupe).
MESSAGE_ID_HEADERS = ("Polar-Message-Id", "Nats-Msg-Id", "ce-id", "X-GitHub-Delivery")
PARKED_PREFIX = "Polar-Parked-"
_PROCESSED = cast(Table, ProcessedMessage.__table__)
_STRIKES_KEPT = 10_000  # message ids whose failures are remembered (the oldest are forgotten)
T = TypeVar("T")


class Retry(Exception):
    """Not yet: redeliver later (e.g. the organization of this event is not known yet)."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class Reject(Exception):
    """This message can never succeed: park it now."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Delivery:
    subject: str  # without the deployment's NATS prefix
    data: bytes
    headers: Mapping[str, str]
    message_id: str
    num_delivered: int
    stream_sequence: int
    stored_at: datetime | None = None  # when the stream accepted it


Handler = Callable[[AsyncSession, Delivery], Awaitable[None]]
# Takes the deliveries of one fetch (new ones only, stream order) and returns, by message id,
# those it did not apply and why. It must not have written anything for those.
BatchHandler = Callable[[AsyncSession, list[Delivery]], Awaitable[Mapping[str, Retry | Reject]]]


def one_by_one(batch_handler: BatchHandler) -> Handler:
    """A single-message handler from a batch handler (the fallback of batch mode)."""

    async def handle(session: AsyncSession, delivery: Delivery) -> None:
        failure = (await batch_handler(session, [delivery])).get(delivery.message_id)
        if failure is not None:
            raise failure

    return handle


def message_id_of(headers: Mapping[str, str], stream: str, seq: int) -> str:
    for key in MESSAGE_ID_HEADERS:
        if headers.get(key):
            return headers[key]
    return f"{stream}:{seq}"  # stable across redeliveries of the same stored message


def _header_value(text: str, limit: int = 1000) -> str:
    return re.sub(r"[\r\n]+", " ", text)[:limit]


class Consumer:
    def __init__(
        self,
        name: str,
        stream: StreamSpec,
        filter_subjects: Sequence[str],
        handler: Handler | None = None,
        *,
        batch_handler: BatchHandler | None = None,
        sessionmaker: async_sessionmaker[AsyncSession],
        js: JetStreamContext,
        settings: ServiceSettings,
        batch_size: int | None = None,
        fetch_timeout: float = 1.0,
    ) -> None:
        """Give `handler` (one transaction per message) or `batch_handler` (one per fetch)."""
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise ValueError(f"consumer name {name!r}: use letters, digits, - and _")
        if batch_handler is not None and handler is None:
            handler = one_by_one(batch_handler)  # the fallback when a batch fails
        elif handler is None or batch_handler is not None:
            raise ValueError("give exactly one of handler and batch_handler")
        self.name = name
        self._metrics = consumer_metrics(name)
        self._stream = stream.stream_name(settings.nats_prefix)
        self._filters = [subject_for(settings, s) for s in filter_subjects]
        self._wanted_subjects: dict[str, bool] = {}
        self._batch_handler = batch_handler
        self._handler = handler
        self._sessionmaker = sessionmaker
        self._js = js
        self._settings = settings
        self._max_attempts = settings.consumer_max_attempts
        # Batch mode amortizes a transaction over the fetch: the bigger, the cheaper.
        self._batch_size = batch_size or (256 if batch_handler else 10)
        self._fetch_timeout = fetch_timeout
        self._stop = asyncio.Event()  # run() installs its own
        # Failures (not outages, not waits) per message id; a message found here failed
        # alone before and is handled alone again.
        self._strikes: OrderedDict[str, int] = OrderedDict()
        self._database = Outage(
            f"database (consumer {name})",
            base=settings.consumer_retry_base_seconds,
            cap=settings.outage_retry_max_seconds,
        )
        self._nats = Outage(
            f"NATS (consumer {name})",
            base=settings.consumer_retry_base_seconds,
            cap=settings.outage_retry_max_seconds,
        )

    async def setup(self) -> JetStreamContext.PullSubscription:
        """Create (or update) the durable consumer and bind a pull subscription to it."""
        config = ConsumerConfig(
            durable_name=self.name,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self._settings.consumer_ack_wait_seconds,
            max_deliver=-1,  # bounded by us, so the last failure can be parked
            max_ack_pending=1000,
        )
        if len(self._filters) == 1:
            config.filter_subject = self._filters[0]
        elif _supports_filter_subjects(self._js):
            config.filter_subjects = list(self._filters)
        # else: NATS < 2.10 has one filter per consumer; take the whole stream and skip
        # non-matching messages client side (see _process).
        try:
            await self._js.add_consumer(self._stream, config)
        except nats.js.errors.BadRequestError as exc:
            # Exists with a config this server cannot update in place: keep using it.
            log.warning("consumer config not updated", error=repr(exc))
        return await self._js.pull_subscribe_bind(durable=self.name, stream=self._stream)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; the message in hand is finished first."""
        self._stop = stop
        with structlog.contextvars.bound_contextvars(consumer=self.name):
            sub: JetStreamContext.PullSubscription | None = None
            try:
                while not stop.is_set():
                    try:
                        if sub is None:
                            sub = await self.setup()
                        msgs = await sub.fetch(self._batch_size, timeout=self._fetch_timeout)
                    except (TimeoutError, nats.errors.TimeoutError):
                        continue  # nothing to do (or NATS is down: the next fetch tells)
                    except Exception as exc:
                        if isinstance(exc, nats.js.errors.NotFoundError):
                            sub = None  # consumer or stream deleted: declare it again
                        await _sleep(self._nats.failed(exc), stop)
                        continue
                    self._nats.recovered()
                    await self._process_batch(msgs, stop)
            finally:
                if sub is not None:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()

    async def _process_batch(self, msgs: Sequence[Msg], stop: asyncio.Event) -> None:
        # Every message of the fetch is kept alive, not only the one in hand: the others
        # wait their turn (a slow message, an outage), and ack_wait is short.
        async with _keep_alive(*msgs, ack_wait=self._ack_wait):
            await self._process_fetched(msgs, stop)

    async def _process_fetched(self, msgs: Sequence[Msg], stop: asyncio.Event) -> None:
        if self._batch_handler is not None:
            try:
                await self.process_many(msgs)
            except Exception as exc:
                # NATS trouble while acking/parking: see below.
                log.warning("batch not settled", error=brief(exc))
            return
        for i, msg in enumerate(msgs):
            if stop.is_set():
                # Hand the rest back now rather than after ack_wait.
                for rest in msgs[i:]:
                    with contextlib.suppress(Exception):
                        await rest.nak()
                return
            try:
                await self.process(msg)
            except Exception as exc:
                # NATS trouble while acking/parking: JetStream redelivers after ack_wait
                # and the idempotency mark keeps it from applying twice.
                log.warning("message not settled", error=brief(exc))

    def _delivery(self, msg: Msg) -> Delivery:
        meta = msg.metadata
        if meta.num_delivered > 1:
            self._metrics.redeliveries.inc()
        headers = dict(msg.headers or {})
        return Delivery(
            subject=strip_prefix(self._settings, msg.subject),
            data=msg.data,
            headers=headers,
            message_id=message_id_of(headers, meta.stream, meta.sequence.stream),
            num_delivered=meta.num_delivered,
            stream_sequence=meta.sequence.stream,
            stored_at=meta.timestamp,
        )

    async def process(self, msg: Msg) -> str:
        """Handle one message; returns the outcome (acked, duplicate, retried, parked, skipped)."""
        delivery = self._delivery(msg)
        start = time.perf_counter()
        # A message this consumer skips (NATS < 2.10 filters client side) gets no span.
        with self._bound(delivery) if self._wanted(msg.subject) else contextlib.nullcontext():
            outcome = await self._process(msg, delivery)
        _log_handled(delivery, outcome)
        self._metrics.handled(outcome)
        self._metrics.seconds.observe(time.perf_counter() - start)
        return outcome

    async def sample_metrics(self) -> None:
        """The consumer's backlog as JetStream counts it (polar_kit.sampler)."""
        info = await self._js.consumer_info(self._stream, self.name)
        self._metrics.pending.set(info.num_pending or 0)
        self._metrics.ack_pending.set(info.num_ack_pending or 0)

    @contextlib.contextmanager
    def _bound(self, delivery: Delivery) -> Iterator[None]:
        """Its log fields (delivery id, request id, trace id) and its span (polar_kit.tracing)."""
        with (
            _log_bound(delivery),
            consuming(delivery.subject, delivery.headers, consumer=self.name),
        ):
            yield

    def _wanted(self, subject: str) -> bool:
        # Memoized: a consumer sees few distinct subjects, and thousands of messages a second.
        wanted = self._wanted_subjects.get(subject)
        if wanted is None:
            wanted = any(subject_matches(f, subject) for f in self._filters)
            if len(self._wanted_subjects) < 10_000:
                self._wanted_subjects[subject] = wanted
        return wanted

    async def _process(self, msg: Msg, delivery: Delivery) -> str:
        if not self._wanted(msg.subject):
            await msg.ack()
            return "skipped"
        try:
            async with _keep_alive(msg, ack_wait=self._ack_wait):
                handled = await self._until_available(lambda: self._handle(delivery))
        except Exception as exc:
            return await self._settle_failure(msg, delivery, exc)
        self._strikes.pop(delivery.message_id, None)
        await msg.ack()
        return "acked" if handled else "duplicate"

    async def _until_available(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()` until it succeeds or fails other than by an outage (or we stop).

        During an outage the messages stay in hand (the caller keeps them alive), so an
        outage spends no retry budget and nothing is redelivered meanwhile."""
        while True:
            try:
                result = await attempt()
            except Exception as exc:
                transient = classify(exc) == TRANSIENT
                if not transient:
                    self._database.recovered()  # it answered
                if not transient or self._stop.is_set():
                    raise
                await _sleep(self._database.failed(exc), self._stop)
                if self._stop.is_set():
                    raise  # stopping: hand the messages back rather than try again
                continue
            self._database.recovered()
            return result

    async def _settle_failure(self, msg: Msg, delivery: Delivery, exc: Exception) -> str:
        """Park, or nak with a delay, by the kind of failure; returns the outcome."""
        if isinstance(exc, Reject):
            log.warning("message rejected", reason=exc.reason)
            await self._park(msg, delivery, f"rejected: {exc.reason}")
            return "parked"
        if isinstance(exc, Retry):
            waited = self._waited(delivery)
            if waited >= self._settings.consumer_wait_max_seconds:
                await self._park(msg, delivery, f"still waiting after {waited:.0f} s: {exc.reason}")
                return "parked"
            delay = self._retry_delay(delivery, exc)
            if delivery.num_delivered & (delivery.num_delivered - 1) == 0:  # 1, 2, 4, 8...
                log.info("message waits", reason=exc.reason, attempt=delivery.num_delivered)
            await msg.nak(delay=delay)
            return "retried"
        fault = classify(exc)
        if fault == PERMANENT:
            await self._park(msg, delivery, f"cannot be stored: {brief(exc)}")
            return "parked"
        if fault == TRANSIENT:  # only when stopping during an outage: hand it back
            await msg.nak()
            return "retried"
        strikes = self._strike(delivery.message_id)
        if strikes >= self._max_attempts:
            log.error("message failed, attempts exhausted", error=brief(exc), exc_info=exc)
            await self._park(msg, delivery, repr(exc))
            return "parked"
        delay = self._backoff(strikes)
        # The traceback once per message: later failures say the same.
        log.warning(
            "message failed, will retry",
            error=brief(exc),
            failures=strikes,
            delay=delay,
            exc_info=exc if strikes == 1 else None,
        )
        await msg.nak(delay=delay)
        return "retried"

    def _strike(self, message_id: str) -> int:
        strikes = self._strikes.pop(message_id, 0) + 1
        self._strikes[message_id] = strikes
        while len(self._strikes) > _STRIKES_KEPT:
            self._strikes.popitem(last=False)
        return strikes

    @staticmethod
    def _waited(delivery: Delivery) -> float:
        if delivery.stored_at is None:
            return 0.0
        return (datetime.now(UTC) - delivery.stored_at).total_seconds()

    def _retry_delay(self, delivery: Delivery, exc: Exception) -> float:
        if isinstance(exc, Retry) and exc.delay:
            return exc.delay
        return self._backoff(delivery.num_delivered)

    async def process_many(self, msgs: Sequence[Msg]) -> list[str]:
        """Batch mode: handle a fetch in one transaction; returns each message's outcome."""
        if self._batch_handler is None:
            return [await self.process(msg) for msg in msgs]
        start = time.perf_counter()
        outcomes: list[str] = ["skipped"] * len(msgs)
        todo: list[tuple[int, Msg, Delivery]] = []
        alone: list[tuple[int, Msg, Delivery]] = []
        for i, msg in enumerate(msgs):
            if not self._wanted(msg.subject):
                await msg.ack()
                continue
            delivery = self._delivery(msg)
            # A message that failed alone before does not take a batch down with it again.
            (alone if delivery.message_id in self._strikes else todo).append((i, msg, delivery))
        if todo:
            await self._process_together(todo, outcomes)
        for i, msg, delivery in alone:
            outcomes[i] = await self._process_one(msg, delivery)
        for i, _, delivery in (*todo, *alone):
            _log_handled(delivery, outcomes[i])
        self._observe(outcomes, start)
        return outcomes

    async def _process_one(self, msg: Msg, delivery: Delivery) -> str:
        with self._bound(delivery):
            return await self._process(msg, delivery)

    async def _process_together(
        self, todo: list[tuple[int, Msg, Delivery]], outcomes: list[str]
    ) -> None:
        # The first copy of each message id is handled; later copies in the same fetch
        # (a redelivery racing the original) share its fate.
        firsts: dict[str, tuple[int, Msg, Delivery]] = {}
        for item in todo:
            firsts.setdefault(item[2].message_id, item)
        deliveries = [d for _, _, d in firsts.values()]
        failed: Exception | None = None
        try:
            async with _keep_alive(*(m for _, m, _ in todo), ack_wait=self._ack_wait):
                with (
                    _log_bound_batch(deliveries),
                    consuming_batch(
                        [(d.subject, d.headers) for d in deliveries], consumer=self.name
                    ),
                ):
                    fresh, failures = await self._until_available(
                        lambda: self._handle_many(deliveries)
                    )
        except Exception as exc:
            failed = exc
        if failed is not None:  # (outside the except block: no implicit exception chaining)
            if len(todo) == 1 or classify(failed) == TRANSIENT:
                # Alone already (settle it as single mode would), or stopping in an outage.
                for i, msg, delivery in todo:
                    with _log_bound(delivery):
                        outcomes[i] = await self._settle_failure(msg, delivery, failed)
                return
            log.warning("batch failed, handling its messages one by one", error=brief(failed))
            for i, msg, delivery in todo:
                outcomes[i] = await self._process_one(msg, delivery)
            return
        for i, msg, delivery in todo:
            first = firsts[delivery.message_id][2]
            failure = failures.get(first.message_id)
            if first.message_id not in fresh:
                await msg.ack()
                outcomes[i] = "duplicate"
            elif delivery is not first:
                # A copy: redeliver it with the original if that is retried, else done.
                if isinstance(failure, Retry):
                    await msg.nak(delay=self._retry_delay(first, failure))
                    outcomes[i] = "retried"
                else:
                    await msg.ack()
                    outcomes[i] = "duplicate"
            elif failure is not None:
                with _log_bound(delivery):
                    outcomes[i] = await self._settle_failure(msg, delivery, failure)
            else:
                self._strikes.pop(delivery.message_id, None)
                await msg.ack()
                outcomes[i] = "acked"

    async def _handle_many(
        self, deliveries: list[Delivery]
    ) -> tuple[set[str], Mapping[str, Retry | Reject]]:
        """Marks, batch handler and unmarking of failures in one transaction.

        Returns the ids that were new and the handler's failures among them."""
        assert self._batch_handler is not None
        if not deliveries:
            return set(), {}
        async with self._sessionmaker() as session, session.begin():
            # Sorted: concurrent batches overlapping in ids take the row locks in the same
            # order, so they wait for each other instead of deadlocking.
            ids = sorted(d.message_id for d in deliveries)
            # An executemany: its one-row statement is compiled once and cached, then sent as
            # multi-row VALUES in parameter order.
            marked = await session.execute(
                insert(_PROCESSED).on_conflict_do_nothing().returning(_PROCESSED.c.message_id),
                [{"consumer": self.name, "message_id": i} for i in ids],
            )
            fresh = set(marked.scalars())
            new = [d for d in deliveries if d.message_id in fresh]
            failures: dict[str, Retry | Reject] = {}
            if new:
                answer = await self._batch_handler(session, new)
                failures = {k: v for k, v in answer.items() if k in fresh}
            if failures:
                await session.execute(
                    delete(ProcessedMessage).where(
                        ProcessedMessage.consumer == self.name,
                        ProcessedMessage.message_id.in_(list(failures)),
                    )
                )
        return fresh, failures

    def _observe(self, outcomes: list[str], start: float) -> None:
        # The transaction is shared: each message is charged its share of the batch's time.
        share = (time.perf_counter() - start) / max(len(outcomes), 1)
        for outcome, count in Counter(outcomes).items():
            self._metrics.handled(outcome, count)
        histogram = self._metrics.seconds
        for _ in outcomes:
            histogram.observe(share)

    @property
    def _ack_wait(self) -> float:
        return self._settings.consumer_ack_wait_seconds

    async def _handle(self, delivery: Delivery) -> bool:
        """Run the handler in one transaction with the idempotency mark. False if done before."""
        async with self._sessionmaker() as session, session.begin():
            # A concurrent delivery of the same message blocks here until ours commits or
            # rolls back, then sees the row (or takes over).
            mark = await session.execute(
                insert(ProcessedMessage)
                .values(consumer=self.name, message_id=delivery.message_id)
                .on_conflict_do_nothing()
                .returning(ProcessedMessage.message_id)
            )
            if mark.first() is None:
                return False
            await self._handler(session, delivery)
        return True

    def _backoff(self, attempt: int) -> float:
        s = self._settings
        delay: float = s.consumer_retry_base_seconds * 2 ** min(attempt - 1, 30)
        return min(delay, s.consumer_retry_max_seconds)

    async def _park(self, msg: Msg, delivery: Delivery, error: str) -> None:
        """Copy the message to `parked.<consumer>` with why it failed, then ack the original."""
        headers = {k: v for k, v in delivery.headers.items() if not k.startswith("Nats-")}
        headers.update(
            {
                "Polar-Message-Id": delivery.message_id,
                f"{PARKED_PREFIX}Subject": msg.subject,
                f"{PARKED_PREFIX}Stream": self._stream,
                f"{PARKED_PREFIX}Stream-Seq": str(delivery.stream_sequence),
                f"{PARKED_PREFIX}Consumer": self.name,
                f"{PARKED_PREFIX}Error": _header_value(error),
                f"{PARKED_PREFIX}Attempts": str(delivery.num_delivered),
                f"{PARKED_PREFIX}At": datetime.now(UTC).isoformat(),
            }
        )
        await publish(
            self._js,
            subject_for(self._settings, f"parked.{self.name}"),
            delivery.data,
            # Parking the same delivery twice (our ack got lost) stores one copy.
            msg_id=f"{self.name}:{self._stream}:{delivery.stream_sequence}",
            headers=headers,
        )
        await msg.ack()
        self._metrics.parked.inc()
        self._strikes.pop(delivery.message_id, None)
        log.warning("message parked", error=error, parked_stream=PARKED.name)


def _supports_filter_subjects(js: JetStreamContext) -> bool:
    version = js._nc.connected_server_version
    return bool((version.major, version.minor) >= (2, 10))


@contextlib.asynccontextmanager
async def _keep_alive(*msgs: Msg, ack_wait: float) -> AsyncIterator[None]:
    """Tell JetStream we are still working so a slow handler is not redelivered meanwhile."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(ack_wait / 3)
            try:
                for msg in msgs:
                    await msg.in_progress()
            except Exception as exc:  # NATS down: JetStream may redeliver; the mark dedupes
                log.debug("in_progress failed", error=brief(exc))

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def _log_bound(delivery: Delivery) -> contextlib.AbstractContextManager[Any]:
    return structlog.contextvars.bound_contextvars(
        subject=delivery.subject, message_id=delivery.message_id, **log_fields(delivery.headers)
    )


def _log_bound_batch(deliveries: Sequence[Delivery]) -> contextlib.AbstractContextManager[Any]:
    """A batch's lines name its deliveries (one: as _log_bound)."""
    if len(deliveries) == 1:
        return _log_bound(deliveries[0])
    ids = [d.headers[DELIVERY] for d in deliveries if DELIVERY in d.headers]
    return (
        structlog.contextvars.bound_contextvars(deliveries=ids) if ids else contextlib.nullcontext()
    )


def _log_handled(delivery: Delivery, outcome: str) -> None:
    """One line per message done with (retries and parks log their own): with the gateway's
    "webhook accepted" line, the `delivery` (X-GitHub-Delivery, carried by every message it
    causes) follows a delivery from the gateway through each consumer in the logs."""
    if outcome in ("acked", "duplicate"):
        log.info(
            "message handled",
            subject=delivery.subject,
            message_id=delivery.message_id,
            outcome=outcome,
            attempt=delivery.num_delivered,
            **log_fields(delivery.headers),
        )


async def _sleep(seconds: float, stop: asyncio.Event) -> None:
    """Sleep `seconds`, or less if `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
