"""The live stream's feed: one JetStream subscription per replica, decoded once, fanned out.

The replica reads the EVENTS stream through one ordered consumer (flow-controlled; nats-py
recreates it after a gap, from the next sequence) on a NATS connection of its own, so that
however many streams are open, webhook intake (the Bus's connection) never queues behind
their traffic. Each event is decoded once and handed to the streams that may want it
(live.LiveStreams.deliver); the read model of GET /user/organizations follows them too
(readmodel.py).

A resume (Last-Event-ID) reads what the client missed through a consumer of its own
(`CatchUp`), created before the answer starts, then joins the shared feed: events the feed
brought meanwhile are buffered by the stream and those the catch-up already sent are skipped.
Catch-ups at once are bounded (`stream_max_catchups`): NATS limits consumers per stream.

When the feed is lost (its connection down, or its consumer gone and not recreated) every
open stream ends, so clients reconnect with Last-Event-ID; new streams are refused (503)
until the feed is back, which is retried forever.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from polar_kit import tracing
from polar_kit.nats import EVENTS, connect, strip_prefix, subject_for

from . import events, replay
from .live import LiveStreams, StreamEnded
from .readmodel import UserOrganizations
from .settings import GatewaySettings

log = structlog.get_logger(__name__)

HEARTBEAT_SECONDS = 2.0  # JetStream's idle heartbeat of the feed's consumer
CHECK_SECONDS = 1.0  # how often the connection is looked at
CONSUMER_CHECK_SECONDS = 5.0  # how often the consumer is asked for
CATCH_UP_POLL_SECONDS = 0.5  # a catch-up with nothing coming asks its consumer this often


class FeedLost(Exception):
    pass


class Feed:
    def __init__(
        self, settings: GatewaySettings, live: LiveStreams, read_model: UserOrganizations
    ) -> None:
        self.settings = settings
        self.live = live
        self.read_model = read_model
        self.stream_name = EVENTS.stream_name(settings.nats_prefix)
        self.ready = asyncio.Event()
        self.last_sequence = 0  # of the latest event the feed handed out
        self.catchups = 0
        self.nc: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self, _: JetStreamContext | None = None) -> None:
        """Start (a Bus on_ready hook) and give the feed a moment to come up; never fails:
        webhook intake must not wait for the stream's feed (streams get 503 until it is up,
        and /readyz says so)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="stream-feed")
            self._sweeper = asyncio.create_task(self.live.run_sweeper(), name="stream-sweeper")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), self.settings.grpc_deadline_seconds)

    def jetstream(self) -> JetStreamContext:
        if self.nc is None or not self.nc.is_connected:
            raise FeedLost
        return self.nc.jetstream()

    async def _run(self) -> None:
        delay = 0.5
        while not self._closing:
            sub: JetStreamContext.PushSubscription | None = None
            if self.nc is None or self.nc.is_closed:
                self.nc = await connect(self.settings, name="polar-gateway-stream")
            try:
                sub = await self._subscribe(self.jetstream())
                self.ready.set()
                self.read_model.start()
                delay = 0.5
                await self._watch(sub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("stream feed lost", error=repr(exc), streams=self.live.count)
            self.ready.clear()
            self.read_model.stop()
            self.live.end_all("feed lost")
            if sub is not None:
                await _drop(self.nc, sub, self.stream_name)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)

    async def _subscribe(self, js: JetStreamContext) -> JetStreamContext.PushSubscription:
        # From the stream's current end, known exactly: a catch-up reads up to it.
        info = await js.stream_info(self.stream_name)
        self.last_sequence = info.state.last_seq
        return await js.subscribe(
            subject_for(self.settings, "polar.>"),
            stream=self.stream_name,
            ordered_consumer=True,
            idle_heartbeat=HEARTBEAT_SECONDS,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            config=ConsumerConfig(
                inactive_threshold=30,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self.last_sequence + 1,
            ),
            cb=self._receive,
        )

    async def _receive(self, msg: Msg) -> None:
        sequence = msg.metadata.sequence.stream
        self.last_sequence = sequence
        if not self.live.count and not self.read_model.follows(msg.headers):
            return  # nobody needs it: not even decoded (the write path's events, mostly)
        subject = strip_prefix(self.settings, msg.subject)
        with tracing.consuming(subject, msg.headers or {}, consumer="gateway-feed"):
            event = events.decode(sequence, subject, msg.data, msg.headers)
            if event is not None:
                self.read_model.apply(event)
                if self.live.count:
                    self.live.deliver(event)

    async def _watch(self, sub: JetStreamContext.PushSubscription) -> None:
        """Returns (FeedLost) when the connection is down or the consumer is gone."""
        assert self.nc is not None
        ticks = 0
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            if not self.nc.is_connected:
                raise FeedLost("disconnected")
            ticks += 1
            if ticks * CHECK_SECONDS >= CONSUMER_CHECK_SECONDS:
                ticks = 0
                # NotFound when the consumer is gone and nats-py could not recreate it.
                await sub.consumer_info()

    async def close(self) -> None:
        self._closing = True
        self.ready.clear()
        self.read_model.stop()
        for task in (self._task, self._sweeper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.close()


async def _drop(nc: Client, sub: JetStreamContext.PushSubscription, stream: str) -> None:
    with contextlib.suppress(Exception):
        await sub.unsubscribe()
    name = getattr(sub, "_consumer", None)
    if isinstance(name, str) and nc.is_connected:
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_consumer(stream, name)


@dataclass
class CatchUp:
    """What a resuming client missed: its own consumer from the replay plan's start, read up
    to `until` (the feed's position when the stream joined it)."""

    feed: Feed
    plan: replay.Replay
    until: int
    sub: JetStreamContext.PushSubscription | None = None

    @classmethod
    async def begin(cls, feed: Feed, plan: replay.Replay, until: int) -> CatchUp:
        """Raises (the route answers 503) when no consumer can be made now."""
        catch_up = cls(feed, plan, until)
        feed.catchups += 1
        try:
            catch_up.sub = await feed.jetstream().subscribe(
                subject_for(feed.settings, "polar.>"),
                stream=feed.stream_name,
                ordered_consumer=True,
                deliver_policy=plan.policy,
                config=plan.consumer_config(),
                idle_heartbeat=5,
            )
        except BaseException:
            feed.catchups -= 1
            raise
        return catch_up

    async def replay(self, emit: Callable[[events.Event], Awaitable[None]]) -> int:
        """Emit what the client missed, in order, up to `until`; the last sequence read (0:
        none). Raises StreamEnded when the catch-up stalls (the client resumes again)."""
        sub = self.sub
        assert sub is not None
        last, received, waited = 0, 0, 0.0
        try:
            while last < self.until:
                try:
                    msg = await sub.next_msg(timeout=CATCH_UP_POLL_SECONDS)
                except nats.errors.TimeoutError:
                    # Done when the server has nothing left for us and nothing on the way
                    # (counted by the consumer's own sequence: an empty window is 0).
                    info = await sub.consumer_info()
                    sent = info.delivered.consumer_seq if info.delivered is not None else 0
                    if not info.num_pending and (sent or 0) <= received:
                        break
                    waited += CATCH_UP_POLL_SECONDS
                    if waited >= self.feed.settings.grpc_deadline_seconds:
                        raise StreamEnded from None
                    continue
                received, waited = received + 1, 0.0
                last = msg.metadata.sequence.stream
                if last < self.plan.skip_before:
                    continue
                subject = strip_prefix(self.feed.settings, msg.subject)
                event = events.decode(last, subject, msg.data, msg.headers)
                if event is not None:
                    await emit(event)
        finally:
            await self.close()
        return last

    async def close(self) -> None:
        if self.sub is not None:
            sub, self.sub = self.sub, None
            self.feed.catchups -= 1
            assert self.feed.nc is not None
            await asyncio.shield(_drop(self.feed.nc, sub, self.feed.stream_name))
