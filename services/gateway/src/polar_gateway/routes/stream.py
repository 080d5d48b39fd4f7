"""GET /api/v2/stream (and /api/v1/stream): Server-Sent Events of the events a user may see.

The replica's one shared subscription (feed.py) hands each event, decoded once, to the open
streams that may want it (live.py); each stream filters it with its own Channels and writes
it to its client. The SSE id is the JetStream stream sequence: a client reconnecting with
`Last-Event-ID` gets what it missed through a consumer of its own (feed.CatchUp) before
joining the shared feed; what a resume may replay: replay.py. What ends a stream from
outside (logout, removal, deleted user, a lost feed, a client too slow to read): live.py.

Refusals come before the answer starts, as 503 with Retry-After: the feed is down, the
replica has `stream_max_clients` streams open, or `stream_max_catchups` resumes are being
replayed (or NATS cannot make a catch-up consumer now). Once the 200 is sent, the stream
only ends by closing (the client reconnects with Last-Event-ID).

The framework answers the request (validation, the session, the checks and refusals, the
200's start) and then hands the open stream to `LiveIngress`, in front of it (app.asgi),
which serves it once the framework has returned: an open stream keeps a `Live`, its
OpenStream and the server's own per-connection state alive, not the framework's layers
(decision 0030). The server tells the stream when its client is gone (server.Connection).

Channels: without parameters, the user's own events and those of every organization they
belong to (following memberships as they change); `organization_id` narrows to one
organization, `repository_id` to one repository — each must be the user's, else 403.

/api/v1/stream is the monolith's: `organization_id` is required, and each event is a plain
`data:` line (no `event:` name, so EventSource's onmessage sees it) holding
`{"id", "key", "payload"}` with the monolith's keys (mappers_v1.stream_event); events it
had no key for are not sent there.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import orjson
import structlog
from fastapi import APIRouter, Header, Query
from fastapi.responses import Response
from nats.js.api import DeliverPolicy
from polar.organization.v1 import events_pb2 as organization_events
from polar.organization.v1 import organization_service_pb2 as org_pb
from polar.repository.v1 import repository_pb2
from polar.repository.v1 import repository_service_pb2 as repo_pb
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import events, mappers_v1, replay
from ..auth import CurrentSession, GatewayDep
from ..errors import RETRY_AFTER_SECONDS, ApiError
from ..feed import CatchUp
from ..live import OpenStream, StreamEnded, still_valid
from ..metrics import STREAM_CLIENTS, STREAM_ENDED, STREAM_EVENTS
from ..server import CONNECTION, Connection
from ..sessions import Session
from ..state import Gateway
from ._common import V1, V2, errors, v1_errors

log = structlog.get_logger(__name__)

router = APIRouter(prefix=V2, tags=["stream"])
router_v1 = APIRouter(prefix=V1, tags=["stream"])
PATH = V2 + "/stream"
PATH_V1 = V1 + "/stream"
HANDOFF = "polar.live"  # scope key: where LiveResponse leaves its Live for LiveIngress

# An event as this route's clients get it (None: not sent there); made once per event.
Format = Callable[[events.Event], bytes | None]


def _v2_event(event: events.Event) -> bytes | None:
    head = f"id: {event.sequence}\r\nevent: {event.subject}\r\ndata: "
    return (head + event.to_json() + "\r\n\r\n").encode()


def _v1_event(event: events.Event) -> bytes | None:
    data = mappers_v1.stream_event(event)
    if data is None:
        return None
    return b"id: %d\r\ndata: %s\r\n\r\n" % (event.sequence, orjson.dumps(data))


READY = b": ready\r\n\r\n"  # the stream is live: what is published from now on arrives
PING = b": ping\r\n\r\n"
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),  # proxies must not buffer it
]


class Unavailable(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(
            503, message, code="unavailable", headers={"Retry-After": RETRY_AFTER_SECONDS}
        )


ORGANIZATION_PAGE = 100


async def _user_organizations(gateway: Gateway, user_id: str) -> set[str]:
    ids: set[str] = set()
    token = ""
    while True:
        page = await gateway.clients.call(
            gateway.clients.org.ListOrganizations,
            org_pb.ListOrganizationsRequest(
                member_user_id=user_id, page_size=ORGANIZATION_PAGE, page_token=token
            ),
        )
        ids.update(o.id for o in page.organizations)
        token = page.next_page_token
        if not token:
            return ids


async def _channels(
    gateway: Gateway, user_id: str, organization_id: str | None, repository_id: str | None
) -> events.Channels:
    if repository_id is not None:

        async def get() -> repository_pb2.Repository:
            request = repo_pb.GetRepositoryRequest(id=repository_id)
            return (
                await gateway.clients.call(gateway.clients.repo.GetRepository, request)
            ).repository

        # A repository of an organization not the user's is as unknown as a missing one.
        repository = await gateway.memberships.visible_repository(user_id, get())
        if organization_id is not None and repository.organization_id != organization_id:
            raise ApiError(422, "repository_id is not a repository of organization_id")
        return events.Channels(
            user_id,
            {repository.organization_id},
            {repository.id},
            include_user=False,
            pinned_organization=repository.organization_id,
        )
    if organization_id is not None:
        await gateway.memberships.require(user_id, organization_id)
        return events.Channels(
            user_id, {organization_id}, include_user=False, pinned_organization=organization_id
        )
    return events.Channels(user_id, await _user_organizations(gateway, user_id))


def _start_sequence(last_event_id: str | None) -> int | None:
    if last_event_id is None or last_event_id == "":
        return None
    if not last_event_id.isdigit() or len(last_event_id) > 19:
        raise ApiError(422, "Last-Event-ID must be an event id this stream sent (an integer)")
    return int(last_event_id) + 1


class Live:
    """One open stream, served: its events written as they come, batched when several are
    pending; a ping comment when idle. It holds little (2,000 open streams are 2,000 of
    these): the collector traverses all of it on every full collection."""

    __slots__ = ("after", "catch_up", "format", "gateway", "key", "stream")

    def __init__(
        self,
        gateway: Gateway,
        stream: OpenStream,
        catch_up: CatchUp | None,
        format: Format,
        after: int,
    ) -> None:
        self.gateway, self.stream, self.catch_up, self.format = gateway, stream, catch_up, format
        self.key = format.__name__
        # Events up to this sequence the client has (Last-Event-ID, or sent by the catch-up):
        # another replica's feed may be ahead of this one's.
        self.after = after

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Once the answer has started: until the stream ends."""
        stream = self.stream
        # The body's frames go straight to the server (middleware.py): the layers in between
        # only act on the answer's start, and a frame per event per client adds up.
        body: Send = scope.get("polar.send", send)
        connection: Connection | None = scope.get(CONNECTION)
        listener = None
        if connection is not None:  # our server tells when the client is gone (server.py)
            stream.abort = connection.abort
            connection.on_lost = stream.disconnected
            if connection.lost:
                stream.disconnected()
        else:
            listener = asyncio.create_task(self._listen(receive))
        STREAM_CLIENTS.inc()
        try:
            await self._write(body, READY)
            if self.catch_up is not None:
                replayed = await self.catch_up.replay(functools.partial(self._replayed, body))
                self.after = max(self.after, replayed)
            await self._run(body)
        except StreamEnded:
            pass
        finally:
            if listener is not None:
                listener.cancel()
            if connection is not None:
                connection.on_lost = None
            STREAM_CLIENTS.dec()
            await self.discard()
        STREAM_ENDED.labels(stream.reason or "ended").inc()
        if stream.reason == "slow" and stream.abort is not None:
            stream.abort()
            await asyncio.sleep(0)  # the server sees the connection lost before we return
        elif stream.reason != "disconnected":
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def discard(self) -> None:
        self.gateway.live.close(self.stream)
        if self.catch_up is not None:
            await self.catch_up.close()

    async def _listen(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.stream.disconnected()

    async def _run(self, send: Send) -> None:
        stream = self.stream
        while True:
            await stream.wait()
            if stream.ping_due and not stream.pending:
                stream.ping_due = False
                await stream.check()  # idle streams check at each heartbeat
                await self._write(send, PING)
                continue
            await stream.check()
            chunk: list[bytes] = []
            while stream.pending and not stream.ended:
                event = stream.pending.popleft()
                if event.sequence > self.after:
                    frame = self._frame(event)
                    if frame is not None:
                        chunk.append(frame)
            if chunk:
                await self._write(send, b"".join(chunk))
                STREAM_EVENTS.inc(len(chunk))

    def _frame(self, event: events.Event) -> bytes | None:
        """The event's frame if this stream sends it; follows the user's memberships (a
        stream pinned to an organization the user left ends after it)."""
        stream = self.stream
        send_it, keep_open = stream.channels.process(event)
        if isinstance(event.message, organization_events.MemberAdded):
            self.gateway.live.follow(stream)
        if not keep_open:
            stream.end("removed")
        if not send_it:
            return None
        encoded = event.encoded
        if self.key not in encoded:
            encoded[self.key] = self.format(event)
        return encoded[self.key]

    async def _replayed(self, send: Send, event: events.Event) -> None:
        await self.stream.check()
        frame = self._frame(event)
        if frame is not None:
            await self._write(send, frame)
            STREAM_EVENTS.inc()

    async def _write(self, send: Send, data: bytes) -> None:
        stream = self.stream
        # While it lasts, ending the stream closes the connection; one lasting
        # stream_send_timeout_seconds ends it (live.py).
        stream.sending, stream.last_write = True, time.monotonic()
        try:
            await send({"type": "http.response.body", "body": data, "more_body": True})
        finally:
            stream.sending = False


class LiveResponse(Response):
    """The framework's side of an open stream: the answer's start, through the framework's
    own middleware (CORS); then the stream is handed to LiveIngress, which serves it once
    the framework has returned (or, with no LiveIngress in front, served here)."""

    def __init__(self, live: Live) -> None:
        super().__init__(media_type="text/event-stream")
        self.raw_headers = list(HEADERS)
        self.live = live

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        except BaseException:
            await self.live.discard()
            raise
        handoff: list[Live] | None = scope.get(HANDOFF)
        if handoff is not None:
            handoff.append(self.live)
        else:
            await self.live.serve(scope, receive, send)


class LiveIngress:
    """ASGI middleware serving the open streams past the framework. FastAPI still answers
    GET {PATH} (validation, the session, `_open`'s checks and refusals, the 200's start), so
    all of that stays as it is; but its layers of coroutines, closures and request objects
    would stay alive for as long as the stream lasts, and a replica holds thousands of
    streams, all traversed by every full collection of the cyclic GC (decision 0030)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else None
        if path not in (PATH, PATH_V1) or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        scope["polar.route"] = path  # the metrics label the framework's route would give
        own = set(scope)
        # A list: LiveResponse finds it even in a copy of the scope.
        handoff: list[Live] = []
        scope[HANDOFF] = handoff
        await self.app(scope, receive, send)
        # What the framework put in the scope for the request (its exit stacks...) is not
        # kept for the stream's life.
        for key in scope.keys() - own:
            del scope[key]
        if handoff:  # else answered there (a refusal, an error)
            await handoff[0].serve(scope, receive, send)


async def _open(
    gateway: Gateway,
    session: Session,
    organization_id: uuid.UUID | None,
    repository_id: uuid.UUID | None,
    last_event_id: str | None,
    format: Format,
) -> LiveResponse:
    start = _start_sequence(last_event_id)
    settings, feed, live = gateway.settings, gateway.feed, gateway.live
    if not feed.ready.is_set():
        raise Unavailable("the live stream is unavailable, try again shortly")
    if live.count >= settings.stream_max_clients:
        raise Unavailable("this server has as many live streams as it takes, try again shortly")
    channels = await _channels(
        gateway,
        session.user_id,
        str(organization_id) if organization_id else None,
        str(repository_id) if repository_id else None,
    )
    plan = replay.Replay()
    if start is not None and settings.stream_replay_seconds > 0:
        if feed.catchups >= settings.stream_max_catchups:
            raise Unavailable("too many streams are resuming now, try again shortly")
        try:
            plan = await replay.plan(feed.jetstream(), settings, session.user_id, start)
        except Exception as exc:
            log.warning("stream replay not planned", error=repr(exc))
            raise Unavailable("the live stream is unavailable, try again shortly") from exc
        channels.joined = plan.joined
    # Registered first, then the catch-up reads up to where the feed is now: nothing falls
    # between the two (no await in between).
    recheck = functools.partial(still_valid, gateway, channels, session)  # (no closure cells)
    stream = live.open(session, channels, recheck)
    until = feed.last_sequence
    after = max(start or 1, plan.skip_before) - 1
    if plan.policy == DeliverPolicy.NEW or (plan.start_sequence or 0) > until:
        return LiveResponse(Live(gateway, stream, None, format, after))  # the feed has the rest
    try:
        catch_up = await CatchUp.begin(feed, plan, until)
    except Exception as exc:  # NATS' consumer limit, or NATS gone: refused, not cut off
        live.close(stream)
        log.warning("stream catch-up refused", error=repr(exc))
        raise Unavailable("the live stream cannot resume now, try again shortly") from exc
    return LiveResponse(Live(gateway, stream, catch_up, format, after))


STREAM_RESPONSES: Mapping[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"},
}


@router.get(
    "/stream",
    responses={
        **STREAM_RESPONSES,
        **errors(401, 403, 404, 422, 503),
    },
)
async def stream(
    session: CurrentSession,
    gateway: GatewayDep,
    organization_id: Annotated[uuid.UUID | None, Query()] = None,
    repository_id: Annotated[uuid.UUID | None, Query()] = None,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
) -> Response:
    return await _open(gateway, session, organization_id, repository_id, last_event_id, _v2_event)


@router_v1.get(
    "/stream",
    responses={
        **STREAM_RESPONSES,
        **v1_errors(401, 403, 404, 422, 503),
    },
)
async def stream_v1(
    session: CurrentSession,
    gateway: GatewayDep,
    organization_id: Annotated[uuid.UUID, Query()],
    repository_id: Annotated[uuid.UUID | None, Query()] = None,
    last_event_id: Annotated[str | None, Header(max_length=32, include_in_schema=False)] = None,
) -> Response:
    return await _open(gateway, session, organization_id, repository_id, last_event_id, _v1_event)
