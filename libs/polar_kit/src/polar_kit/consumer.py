"""Durable JetStream pull consumer with idempotent handling, bounded retries and parking.

For each message, one database transaction records (consumer, message id) in
processed_messages and runs the handler; commit, then ack. A redelivery of a handled message
finds its row and is only acked, so the effect happens once. Failures are retried with
backoff up to `consumer_max_attempts` deliveries, then the message is parked on the PARKED
stream for an operator (see polar_kit.parked) instead of being retried forever or dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import nats.errors
import nats.js.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from polar_db.models import ProcessedMessage
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from polar_kit.metrics import CONSUMER_HANDLING_SECONDS, CONSUMER_MESSAGES
from polar_kit.nats import PARKED, StreamSpec, publish, strip_prefix, subject_for, subject_matches
from polar_kit.settings import ServiceSettings

log = structlog.get_logger(__name__)

# Where the logical message id is looked up, first match wins. Polar-Message-Id survives a
# replay from the parked stream (which needs a fresh Nats-Msg-Id to pass JetStream dedupe).
MESSAGE_ID_HEADERS = ("Polar-Message-Id", "Nats-Msg-Id", "ce-id", "X-GitHub-Delivery")
PARKED_PREFIX = "Polar-Parked-"


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


Handler = Callable[[AsyncSession, Delivery], Awaitable[None]]


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
        handler: Handler,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        js: JetStreamContext,
        settings: ServiceSettings,
        batch_size: int = 10,
        fetch_timeout: float = 1.0,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise ValueError(f"consumer name {name!r}: use letters, digits, - and _")
        self.name = name
        self._stream = stream.stream_name(settings.nats_prefix)
        self._filters = [subject_for(settings, s) for s in filter_subjects]
        self._handler = handler
        self._sessionmaker = sessionmaker
        self._js = js
        self._settings = settings
        self._max_attempts = settings.consumer_max_attempts
        self._batch_size = batch_size
        self._fetch_timeout = fetch_timeout

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
        with structlog.contextvars.bound_contextvars(consumer=self.name):
            sub: JetStreamContext.PullSubscription | None = None
            try:
                while not stop.is_set():
                    try:
                        if sub is None:
                            sub = await self.setup()
                        msgs = await sub.fetch(self._batch_size, timeout=self._fetch_timeout)
                    except (TimeoutError, nats.errors.TimeoutError):
                        continue  # nothing to do
                    except Exception as exc:
                        log.warning("consumer fetch failed, retrying", error=repr(exc))
                        if isinstance(exc, nats.js.errors.NotFoundError):
                            sub = None  # consumer or stream deleted: declare it again
                        await asyncio.sleep(1)
                        continue
                    await self._process_batch(msgs, stop)
            finally:
                if sub is not None:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()

    async def _process_batch(self, msgs: Sequence[Msg], stop: asyncio.Event) -> None:
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
                log.warning("message not settled", error=repr(exc))

    async def process(self, msg: Msg) -> str:
        """Handle one message; returns the outcome (acked, duplicate, retried, parked, skipped)."""
        meta = msg.metadata
        headers = dict(msg.headers or {})
        delivery = Delivery(
            subject=strip_prefix(self._settings, msg.subject),
            data=msg.data,
            headers=headers,
            message_id=message_id_of(headers, meta.stream, meta.sequence.stream),
            num_delivered=meta.num_delivered,
            stream_sequence=meta.sequence.stream,
        )
        start = time.perf_counter()
        with structlog.contextvars.bound_contextvars(
            subject=delivery.subject, message_id=delivery.message_id
        ):
            outcome = await self._process(msg, delivery)
        CONSUMER_MESSAGES.labels(self.name, outcome).inc()
        CONSUMER_HANDLING_SECONDS.labels(self.name).observe(time.perf_counter() - start)
        return outcome

    async def _process(self, msg: Msg, delivery: Delivery) -> str:
        if not any(subject_matches(f, msg.subject) for f in self._filters):
            await msg.ack()
            return "skipped"
        try:
            async with _keep_alive(msg, self._settings.consumer_ack_wait_seconds):
                handled = await self._handle(delivery)
        except Reject as exc:
            log.warning("message rejected", reason=exc.reason)
            await self._park(msg, delivery, f"rejected: {exc.reason}")
            return "parked"
        except Exception as exc:
            error = exc.reason if isinstance(exc, Retry) else repr(exc)
            # Database/network outages are not the message's fault: retry, never park.
            if delivery.num_delivered >= self._max_attempts and not _is_transient(exc):
                log.error("message failed, attempts exhausted", error=error, exc_info=exc)
                await self._park(msg, delivery, error)
                return "parked"
            delay = exc.delay if isinstance(exc, Retry) and exc.delay else self._backoff(delivery)
            log.warning(
                "message failed, will retry",
                error=error,
                attempt=delivery.num_delivered,
                delay=delay,
                exc_info=not isinstance(exc, Retry),
            )
            await msg.nak(delay=delay)
            return "retried"
        await msg.ack()
        return "acked" if handled else "duplicate"

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

    def _backoff(self, delivery: Delivery) -> float:
        s = self._settings
        delay: float = s.consumer_retry_base_seconds * 2 ** (delivery.num_delivered - 1)
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
        log.warning("message parked", error=error, parked_stream=PARKED.name)


def _is_transient(exc: BaseException) -> bool:
    return isinstance(
        exc, OSError | asyncio.TimeoutError | sa_exc.OperationalError | sa_exc.InterfaceError
    ) or bool(getattr(exc, "connection_invalidated", False))


def _supports_filter_subjects(js: JetStreamContext) -> bool:
    version = js._nc.connected_server_version
    return bool((version.major, version.minor) >= (2, 10))


@contextlib.asynccontextmanager
async def _keep_alive(msg: Msg, ack_wait: float) -> AsyncIterator[None]:
    """Tell JetStream we are still working so a slow handler is not redelivered meanwhile."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(ack_wait / 3)
            await msg.in_progress()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
