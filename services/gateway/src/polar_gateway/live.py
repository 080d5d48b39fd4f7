"""What ends or narrows an open live stream from outside it.

A stream reads its own JetStream consumer (routes/stream.py); on its own it would learn of a
removal only when the event reaches it in order, and never of a logout or a deleted user.
So every open stream is registered here, and:

- a logout (a revoked session id, from any replica, through the revocation bucket's watch)
  ends the streams of that session at once;
- `member_removed` / organization `deleted` events (a core NATS subscription of every
  replica, `watch_memberships`) drop the cached membership answers and take the
  organization away from the user's open streams at once (a stream pinned to it ends);
- at most `stream_recheck_seconds` (5 s) before sending an event, a stream has checked that
  its session is neither revoked nor expired and that its user still exists (GetUser: a
  deleted user is NOT_FOUND); the contract has no user-deleted event to react to sooner.
  Idle streams check at each heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import nats.errors
import structlog
from google.protobuf.message import DecodeError
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from polar import catalog
from polar.organization.v1 import events_pb2 as organization_events
from polar.organization.v1 import organization_service_pb2 as org_pb
from polar_kit.nats import subject_for

from .authz import Memberships
from .events import Channels
from .sessions import Session
from .settings import GatewaySettings

if TYPE_CHECKING:
    from .state import Gateway

log = structlog.get_logger(__name__)

Recheck = Callable[[], Awaitable[bool]]


class StreamEnded(Exception):
    """The stream must end now (logout, removal, deleted user, expired session)."""


@dataclass(eq=False)
class OpenStream:
    session: Session
    channels: Channels
    recheck: Recheck
    recheck_seconds: float
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    _waiter: asyncio.Task[bool] | None = None
    _next_check: float = 0.0

    def end(self) -> None:
        self.ended.set()

    async def _check(self) -> None:
        """StreamEnded if the session expired, or (checked at most every recheck_seconds)
        was revoked or lost its user."""
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.recheck_seconds
            if not await self.recheck():
                self.end()
        if self.session.expires_at <= time.time():
            self.end()
        if self.ended.is_set():
            raise StreamEnded

    async def next_message(self, sub: Subscription, timeout: float) -> Msg | None:  # noqa: ASYNC109
        """The next message, None after `timeout`; StreamEnded when the stream must end.
        Checked before waiting and again before a message is handed out, so nothing is sent
        more than recheck_seconds after the user was deleted."""
        await self._check()
        timeout = min(timeout, max(0.01, self.session.expires_at - time.time()))
        if self._waiter is None:
            self._waiter = asyncio.ensure_future(self.ended.wait())
        get = asyncio.ensure_future(sub.next_msg(timeout=timeout))
        get.add_done_callback(_retrieve)  # an abandoned read's error is not "never retrieved"
        racing: list[asyncio.Future[Any]] = [get, self._waiter]
        try:
            await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not get.done():  # ended, or this request cancelled (shutdown, disconnect)
                get.cancel()
        if get.cancelled() or not get.done():
            raise StreamEnded
        try:
            msg = get.result()
        except nats.errors.TimeoutError:
            return None
        await self._check()
        return msg

    def close(self) -> None:
        if self._waiter is not None:
            self._waiter.cancel()


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class LiveStreams:
    """The open streams of this replica, by session and by user."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.recheck_seconds = settings.stream_recheck_seconds
        self._by_user: dict[str, set[OpenStream]] = {}

    def open(self, session: Session, channels: Channels, recheck: Recheck) -> OpenStream:
        stream = OpenStream(session, channels, recheck, self.recheck_seconds)
        stream._next_check = time.monotonic() + self.recheck_seconds  # checked at opening
        self._by_user.setdefault(session.user_id, set()).add(stream)
        return stream

    def close(self, stream: OpenStream) -> None:
        stream.close()
        streams = self._by_user.get(stream.session.user_id)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self._by_user[stream.session.user_id]

    def session_revoked(self, session_id: str) -> None:
        for streams in self._by_user.values():
            for stream in streams:
                if stream.session.session_id == session_id:
                    stream.end()

    def member_removed(self, user_id: str, organization_id: str) -> None:
        for stream in self._by_user.get(user_id, ()):
            if not stream.channels.lose(organization_id):
                stream.end()

    def organization_deleted(self, organization_id: str) -> None:
        for streams in self._by_user.values():
            for stream in streams:
                if not stream.channels.lose(organization_id):
                    stream.end()


async def still_valid(gateway: Gateway, session: Session) -> bool:
    """The periodic check of an open stream: not revoked, and the user still exists (a
    service outage keeps the stream: it is not a reason to believe the user is gone)."""
    if gateway.revocations.is_revoked(session):
        return False
    try:
        await gateway.clients.call(
            gateway.clients.org.GetUser, org_pb.GetUserRequest(id=session.user_id)
        )
    except grpc.aio.AioRpcError as exc:
        return exc.code() != grpc.StatusCode.NOT_FOUND
    return True


async def watch_memberships(
    nc: Client, settings: GatewaySettings, memberships: Memberships, live: LiveStreams
) -> None:
    """Every replica hears every removal (core NATS: a copy to each subscriber)."""

    async def removed(msg: Msg) -> None:
        event = organization_events.MemberRemoved()
        with contextlib.suppress(DecodeError):
            event.ParseFromString(msg.data)
            memberships.forget(event.user_id, event.organization_id)
            live.member_removed(event.user_id, event.organization_id)

    async def deleted(msg: Msg) -> None:
        event = organization_events.OrganizationDeleted()
        with contextlib.suppress(DecodeError):
            event.ParseFromString(msg.data)
            memberships.forget_organization(event.organization_id)
            live.organization_deleted(event.organization_id)

    await nc.subscribe(subject_for(settings, catalog.MEMBER_REMOVED.subject), cb=removed)
    await nc.subscribe(subject_for(settings, catalog.ORGANIZATION_DELETED.subject), cb=deleted)
