"""The open live streams of this replica: what reaches them, and what ends them from outside.

Events come from the replica's one shared subscription (feed.py), decoded once, and are
handed to the streams that may want them: those of the organizations the event names (an
index kept as a superset: a stream is indexed under every organization it has had, and
under a newly joined one as soon as its `member_added` passes) and those of the users it
names. Each stream then decides in order, with its own Channels, what it sends.

A stream buffers at most `stream_buffer_events` events for its client: a client that reads
slower than its events arrive is dropped (its connection closed; it resumes with
Last-Event-ID) rather than slowing anyone else or growing the replica's memory.

What ends a stream from outside:

- a logout (a revoked session id, from any replica, through the revocation bucket's watch)
  ends the streams of that session at once;
- `member_removed` / organization `deleted` events (a core NATS subscription of every
  replica, `watch_memberships`) drop the cached membership answers and take the
  organization away from the user's open streams at once (a stream pinned to it ends);
- at most `stream_recheck_seconds` (5 s) before sending an event, a stream has checked that
  its session is neither revoked nor expired and that its user still exists (`UserChecks`:
  a deleted user is in no member list and NOT_FOUND to GetUser); the contract has no
  user-deleted event to react to sooner. Idle streams check at each heartbeat;
- the feed lost (NATS connection or consumer gone): every stream ends, so its client
  reconnects with Last-Event-ID and resumes once the feed is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import grpc.aio
import structlog
from google.protobuf.message import DecodeError
from nats.aio.client import Client
from nats.aio.msg import Msg
from polar import catalog
from polar.organization.v1 import events_pb2 as organization_events
from polar.organization.v1 import organization_service_pb2 as org_pb
from polar_kit.nats import subject_for

from .authz import Memberships
from .events import Channels, Event
from .sessions import Session
from .settings import GatewaySettings

if TYPE_CHECKING:
    from .state import Gateway

log = structlog.get_logger(__name__)

# None: the stream must end; else the monotonic time its answer was current at.
T = TypeVar("T")
MEMBER_PAGE = 1000  # the service caps it at its own maximum
Recheck = Callable[[], Awaitable[float | None]]


class StreamEnded(Exception):
    """The stream must end now (logout, removal, deleted user, expired session)."""


@dataclass(eq=False, slots=True)  # one per open stream, all in the collector's sight
class OpenStream:
    session: Session
    channels: Channels
    recheck: Recheck
    recheck_seconds: float
    limit: int  # events buffered at most for the client
    ended: bool = False
    reason: str = ""
    pending: deque[Event] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # Closes the client's connection at once (server.py's hook), for a client stuck in a
    # send: a slow client is dropped, not waited for.
    abort: Callable[[], None] | None = None
    sending: bool = False
    last_write: float = field(default_factory=time.monotonic)  # start of the latest write
    ping_due: bool = False  # set by LiveStreams.sweep when idle for a ping interval
    indexed: set[str] = field(default_factory=set)  # organizations it is indexed under
    _next_check: float = 0.0

    def end(self, reason: str = "ended") -> None:
        if self.ended:
            return
        self.reason = reason
        self.ended = True
        self.wake.set()
        if self.sending and self.abort is not None:
            self.abort()

    def disconnected(self) -> None:
        self.end("disconnected")

    def push(self, event: Event) -> None:
        if len(self.pending) >= self.limit:
            self.end("slow")  # it resumes with Last-Event-ID; nobody waits for it
            return
        self.pending.append(event)
        self.wake.set()

    async def check(self) -> None:
        """StreamEnded if the stream was ended, the session expired, or (checked at most
        every recheck_seconds) was revoked or lost its user."""
        if time.monotonic() >= self._next_check and not self.ended:
            checked_at = await self.recheck()
            if checked_at is None:
                self.end("revoked")
            else:
                self._next_check = checked_at + self.recheck_seconds
        if self.session.expires_at <= time.time():
            self.end("expired")
        if self.ended:
            raise StreamEnded

    async def wait(self) -> None:
        """Until an event is pending, a ping is due or the stream ended. No timer of its
        own: LiveStreams.sweep keeps time for every stream (a timer per stream and wait
        costs more than the event it waits for)."""
        if not (self.pending or self.ping_due or self.ended):
            self.wake.clear()
            await self.wake.wait()


class LiveStreams:
    """The open streams of this replica, by user and by organization."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.recheck_seconds = settings.stream_recheck_seconds
        self.buffer = settings.stream_buffer_events
        self.ping_seconds = settings.stream_ping_seconds
        self.send_timeout = settings.stream_send_timeout_seconds
        self._by_user: dict[str, set[OpenStream]] = {}
        self._by_organization: dict[str, set[OpenStream]] = {}
        self.count = 0
        self.user_checks = UserChecks(settings.stream_recheck_seconds)

    def open(self, session: Session, channels: Channels, recheck: Recheck) -> OpenStream:
        stream = OpenStream(session, channels, recheck, self.recheck_seconds, self.buffer)
        stream._next_check = time.monotonic() + self.recheck_seconds  # checked at opening
        self._by_user.setdefault(session.user_id, set()).add(stream)
        for organization_id in channels.organizations:
            self._index(stream, organization_id)
        self.count += 1
        return stream

    def follow(self, stream: OpenStream) -> None:
        """Index the stream under the organizations its Channels gained (a replayed
        `member_added`)."""
        for organization_id in stream.channels.organizations - stream.indexed:
            self._index(stream, organization_id)

    def _index(self, stream: OpenStream, organization_id: str) -> None:
        stream.indexed.add(organization_id)
        self._by_organization.setdefault(organization_id, set()).add(stream)

    def close(self, stream: OpenStream) -> None:
        streams = self._by_user.get(stream.session.user_id)
        if streams is None or stream not in streams:
            return
        self.count -= 1
        streams.discard(stream)
        if not streams:
            del self._by_user[stream.session.user_id]
        for organization_id in stream.indexed:
            indexed = self._by_organization.get(organization_id)
            if indexed is not None:
                indexed.discard(stream)
                if not indexed:
                    del self._by_organization[organization_id]

    def deliver(self, event: Event) -> None:
        """Hand `event` to every stream that may want it (each decides with its Channels)."""
        scope = event.scope
        targets: set[OpenStream] = set()
        for user_id in scope.users:
            streams = self._by_user.get(user_id)
            if streams:
                targets.update(streams)
        if isinstance(event.message, organization_events.MemberAdded):
            # Index the joining user's streams now: the organization's next events may pass
            # before the stream itself has read this one.
            member = event.message.member
            for stream in self._by_user.get(member.user_id, ()):
                if stream.channels.pinned_organization is None:
                    self._index(stream, member.organization_id)
        for organization_id in scope.organizations:
            streams = self._by_organization.get(organization_id)
            if streams:
                targets.update(streams)
        for stream in targets:
            stream.push(event)

    def sweep(self) -> None:
        """Once a second: a ping is due for streams idle a ping interval; a client stuck in a
        write for stream_send_timeout_seconds is dropped; an expired session ends."""
        now, wall = time.monotonic(), time.time()
        for streams in self._by_user.values():
            for stream in streams:
                idle = now - stream.last_write
                if stream.sending:
                    if idle >= self.send_timeout:
                        stream.end("slow")
                elif stream.session.expires_at <= wall:
                    stream.end("expired")
                elif idle >= self.ping_seconds:
                    stream.ping_due = True
                    stream.wake.set()

    async def run_sweeper(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.ping_seconds / 2))
            self.sweep()

    def end_all(self, reason: str) -> None:
        for streams in list(self._by_user.values()):
            for stream in list(streams):
                stream.end(reason)

    def session_revoked(self, session_id: str) -> None:
        for streams in self._by_user.values():
            for stream in streams:
                if stream.session.session_id == session_id:
                    stream.end("signed out")

    def member_removed(self, user_id: str, organization_id: str) -> None:
        for stream in self._by_user.get(user_id, ()):
            if not stream.channels.lose(organization_id):
                stream.end("removed")

    def organization_deleted(self, organization_id: str) -> None:
        for stream in list(self._by_organization.get(organization_id, ())):
            if not stream.channels.lose(organization_id):
                stream.end("removed")


class UserChecks:
    """Whether a user still exists, asked of the organization service as rarely as the
    guarantee allows: an answer is shared for half a window by every stream that needs it
    (the stream's next check is due a window after the answer was asked for, not after it
    was reused). Most users are known to exist from the member list of one of their
    organizations (ListMembers lists no deleted user): one call per organization and
    half-window instead of one per user; the others are asked with GetUser."""

    def __init__(self, window: float) -> None:
        self.reuse = window / 2
        self._users: dict[str, tuple[float, asyncio.Future[bool]]] = {}
        self._members: dict[str, tuple[float, asyncio.Future[frozenset[str]]]] = {}

    async def exists(
        self,
        user_id: str,
        organizations: set[str],
        ask: Callable[[], Awaitable[bool]],
        members: Callable[[str], Awaitable[frozenset[str]]],
    ) -> float | None:
        """None when the user is gone, else when the answer was asked for (monotonic)."""
        now = time.monotonic()
        for organization_id in sorted(organizations)[:2]:
            asked_at, listed = self._shared(self._members, organization_id, now, members)
            try:
                if user_id in await asyncio.shield(listed):
                    return asked_at
            except Exception:
                continue
        asked_at, found = self._shared(self._users, user_id, now, lambda _: ask())
        return asked_at if await asyncio.shield(found) else None

    def _shared(
        self,
        answers: dict[str, tuple[float, asyncio.Future[T]]],
        key: str,
        now: float,
        fetch: Callable[[str], Awaitable[T]],
    ) -> tuple[float, asyncio.Future[T]]:
        found = answers.get(key)
        if found is None or found[0] + self.reuse <= now:
            if len(answers) > 10_000:  # forget what expired, now and then
                for stale in [k for k, v in answers.items() if v[0] + self.reuse <= now]:
                    del answers[stale]
            future = asyncio.ensure_future(fetch(key))
            future.add_done_callback(_retrieve)
            found = answers[key] = (now, future)
        return found


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # an error nobody awaited is not "never retrieved"


async def still_valid(
    gateway: Gateway, stream_channels: Channels, session: Session
) -> float | None:
    """The periodic check of an open stream: not revoked, and the user still exists (a
    service outage keeps the stream: it is not a reason to believe the user is gone)."""
    if gateway.revocations.is_revoked(session):
        return None
    clients = gateway.clients

    async def ask() -> bool:
        try:
            await clients.call(clients.org.GetUser, org_pb.GetUserRequest(id=session.user_id))
        except grpc.aio.AioRpcError as exc:
            return exc.code() != grpc.StatusCode.NOT_FOUND
        return True

    async def members(organization_id: str) -> frozenset[str]:
        found: set[str] = set()
        token = ""
        while True:
            page = await clients.call(
                clients.org.ListMembers,
                org_pb.ListMembersRequest(
                    organization_id=organization_id, page_size=MEMBER_PAGE, page_token=token
                ),
            )
            found.update(m.user_id for m in page.members)
            token = page.next_page_token
            if not token:
                return frozenset(found)

    return await gateway.live.user_checks.exists(
        session.user_id, stream_channels.organizations, ask, members
    )


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
