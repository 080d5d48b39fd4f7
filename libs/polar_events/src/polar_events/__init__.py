"""Subscribe to Polar's domain events: typed protobuf messages with their CloudEvents metadata.

    async with await nats.connect(url) as nc:
        subscriber = Subscriber(nc, prefix=os.environ.get("POLAR_NATS_PREFIX", ""))
        async def on_issue(event: Event[IssueCreated]) -> None:
            print(event.message.issue.title, event.time)
        await subscriber.subscribe(on_issue, IssueCreated, durable="my-notifier")

Event types are the protobuf message classes (`polar.repository.v1.events_pb2.IssueCreated`);
their subjects and stream come from `polar.catalog`, generated from the protos (the same
source as docs/asyncapi.yaml). Depends only on polar-proto and nats-py.

Semantics, as in Polar's own services: a message is acked once the handler returns; a handler
raising `Retry` gets it again after the delay; a handler raising `Park` (or any other
exception `max_attempts` times, or a body that does not decode) has it copied to
`parked.<consumer>` (the POLAR_PARKED stream, with `Polar-Parked-*` headers saying why) and
acked, so one bad message never blocks the others. Delivery is at least once: make the
handler idempotent (`event.id` is the event's unique id).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import nats.errors
import nats.js.errors
from google.protobuf.message import DecodeError, Message
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from polar import catalog

__all__ = ["Event", "Park", "Retry", "Subscriber", "Subscription"]

M = TypeVar("M", bound=Message)


@dataclass(frozen=True, slots=True)
class Event(Generic[M]):
    """One delivered event: the decoded message and its CloudEvents attributes."""

    message: M
    id: str  # ce-id: unique per event, the same on every redelivery
    type: str  # ce-type: the message's full name
    source: str  # ce-source: the publishing service, e.g. /polar/repository
    time: datetime | None  # ce-time
    subject: str  # logical (without the deployment's prefix)
    sequence: int  # the stream sequence: replay from it with start_sequence=
    attempt: int  # 1 on the first delivery


class Retry(Exception):
    """Raised by a handler: deliver this event again after `delay` seconds."""

    def __init__(self, reason: str, delay: float = 1.0) -> None:
        super().__init__(reason)
        self.delay = delay


class Park(Exception):
    """Raised by a handler: this event can never be handled; park it for an operator."""


Handler = Callable[[Event[Any]], Awaitable[None]]


class Subscription:
    """A running consumer; `await stop()` ends it (a durable consumer keeps its position)."""

    def __init__(self, task: asyncio.Task[None], pull: Any, name: str) -> None:
        self._task = task
        self._pull = pull
        self.name = name

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        with contextlib.suppress(nats.errors.Error):
            await self._pull.unsubscribe()


class Subscriber:
    def __init__(self, nc: Client, *, prefix: str = "") -> None:
        """`prefix`: the deployment's POLAR_NATS_PREFIX (empty unless several share a NATS)."""
        self._nc = nc
        self._js = nc.jetstream()
        self._prefix = prefix

    async def subscribe(
        self,
        handler: Callable[[Event[M]], Awaitable[None]],
        *types: type[M],
        durable: str | None = None,
        start_time: datetime | None = None,
        start_sequence: int | None = None,
        max_attempts: int = 5,
        batch: int = 64,
    ) -> Subscription:
        """Call `handler` with each event of `types` (message classes) from now on, or from
        `start_time` / `start_sequence` (replay). `durable`: a name that keeps the position
        across restarts (created on first use, with these start options; later calls go on
        from where it was); without it, an ephemeral consumer."""
        if not types:
            raise ValueError("name at least one event type (a message class)")
        kinds = {t.DESCRIPTOR.full_name: catalog.BY_TYPE[t.DESCRIPTOR.full_name] for t in types}
        streams = {k.stream for k in kinds.values()}
        if len(streams) != 1:
            raise ValueError(f"these event types are kept in several streams: {streams}")
        stream = _stream_name(self._prefix) + streams.pop()
        policy, options = DeliverPolicy.NEW, dict[str, Any]()
        if start_sequence is not None:
            policy, options = DeliverPolicy.BY_START_SEQUENCE, {"opt_start_seq": start_sequence}
        elif start_time is not None:
            start = start_time.astimezone(UTC).isoformat().replace("+00:00", "Z")
            policy, options = DeliverPolicy.BY_START_TIME, {"opt_start_time": start}
        config = ConsumerConfig(
            durable_name=durable,
            # One subject, or their common wildcard (servers before 2.10 take one filter);
            # events of other types are skipped here.
            filter_subject=self._prefix + _common_filter([k.subject for k in kinds.values()]),
            deliver_policy=policy,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30,
            inactive_threshold=None if durable else 300,
            **options,
        )
        try:  # a durable consumer that exists goes on from its position
            info = await self._js.consumer_info(stream, durable) if durable else None
        except nats.js.errors.NotFoundError:
            info = None
        if info is None:
            info = await self._js.add_consumer(stream, config)
        pull = await self._js.pull_subscribe_bind(consumer=info.name, stream=stream)
        name = durable or info.name
        task = asyncio.create_task(
            self._run(pull, name, stream, handler, kinds, max_attempts, batch), name=name
        )
        return Subscription(task, pull, name)

    async def _run(
        self,
        pull: Any,
        name: str,
        stream: str,
        handler: Callable[[Event[M]], Awaitable[None]],
        kinds: dict[str, catalog.EventType],
        max_attempts: int,
        batch: int,
    ) -> None:
        while True:
            try:
                messages = await pull.fetch(batch, timeout=1)
            except nats.errors.TimeoutError:
                continue
            for msg in messages:
                await self._handle(msg, name, stream, handler, kinds, max_attempts)

    async def _handle(
        self,
        msg: Msg,
        name: str,
        stream: str,
        handler: Callable[[Event[M]], Awaitable[None]],
        kinds: dict[str, catalog.EventType],
        max_attempts: int,
    ) -> None:
        headers = msg.headers or {}
        kind = kinds.get(headers.get("ce-type", ""))
        if kind is None:
            await msg.ack()  # another event type under the same wildcard
            return
        attempt = msg.metadata.num_delivered
        try:
            message = kind.message.FromString(msg.data)
        except DecodeError as e:
            await self._park(msg, name, stream, f"undecodable {kind.type}: {e}")
            return
        event: Event[M] = Event(
            message=message,  # type: ignore[arg-type]  # kind.message is one of M
            id=headers.get("ce-id", ""),
            type=kind.type,
            source=headers.get("ce-source", ""),
            time=_time(headers.get("ce-time")),
            subject=msg.subject.removeprefix(self._prefix),
            sequence=msg.metadata.sequence.stream,
            attempt=attempt,
        )
        try:
            await handler(event)
        except Retry as e:
            await msg.nak(delay=e.delay)
        except Park as e:
            await self._park(msg, name, stream, str(e))
        except Exception as e:
            if attempt >= max_attempts:
                await self._park(msg, name, stream, repr(e))
            else:
                await msg.nak(delay=min(2.0 ** (attempt - 1), 30.0))
        else:
            await msg.ack()

    async def _park(self, msg: Msg, name: str, stream: str, error: str) -> None:
        """As Polar's consumers park: a copy on parked.<consumer> with why, then ack."""
        headers = {k: v for k, v in (msg.headers or {}).items() if not k.startswith("Nats-")}
        headers.update(
            {
                "Polar-Parked-Subject": msg.subject,
                "Polar-Parked-Stream": stream,
                "Polar-Parked-Stream-Seq": str(msg.metadata.sequence.stream),
                "Polar-Parked-Consumer": name,
                "Polar-Parked-Error": re.sub(r"[\r\n]+", " ", error)[:1000],
                "Polar-Parked-Attempts": str(msg.metadata.num_delivered),
                "Polar-Parked-At": datetime.now(UTC).isoformat(),
                "Nats-Msg-Id": f"{name}:{stream}:{msg.metadata.sequence.stream}",
            }
        )
        await self._js.publish(f"{self._prefix}parked.{name}", msg.data, headers=headers)
        await msg.ack()


def _stream_name(prefix: str) -> str:
    """As Polar names streams: the prefix upper-cased, `.` and the like as `_`."""
    return re.sub(r"[^A-Z0-9_-]", "_", prefix.upper())


def _common_filter(subjects: list[str]) -> str:
    if len(set(subjects)) == 1:
        return subjects[0]
    split = [s.split(".") for s in subjects]
    common: list[str] = []
    for tokens in zip(*split, strict=False):
        if len(set(tokens)) != 1:
            break
        common.append(tokens[0])
    return ".".join([*common, ">"])


def _time(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
