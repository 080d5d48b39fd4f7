"""GET /api/v2/stream (and /api/v1/stream): Server-Sent Events of the events a user may see.

Each connection reads the EVENTS stream through its own ordered, ephemeral JetStream
consumer (flow-controlled, recreated by the client library after a gap or a reconnect; the
server drops it when the connection goes), starting after `Last-Event-ID` when given — the
SSE id is the JetStream stream sequence — else at new events. Events are filtered here: the
subjects do not carry organization ids, so the server cannot filter for us. One consumer per
connection keeps resume exact and simple; a fan-out from one shared subscription would cost
NATS less with thousands of clients (see the README). What a resume may replay: replay.py;
what ends a stream from outside (logout, removal, deleted user): live.py.

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
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated

import orjson
import structlog
from fastapi import APIRouter, Header, Query, Request
from nats.js import JetStreamContext
from polar.organization.v1 import organization_service_pb2 as org_pb
from polar.repository.v1 import repository_pb2
from polar.repository.v1 import repository_service_pb2 as repo_pb
from polar_kit.nats import EVENTS, strip_prefix, subject_for
from sse_starlette import EventSourceResponse, ServerSentEvent

from .. import events, mappers_v1, replay
from ..auth import CurrentSession, GatewayDep
from ..errors import ApiError
from ..live import OpenStream, StreamEnded, still_valid
from ..metrics import STREAM_CLIENTS, STREAM_EVENTS
from ..state import Gateway
from ._common import V1, V2, errors, v1_errors

log = structlog.get_logger(__name__)

router = APIRouter(prefix=V2, tags=["stream"])
router_v1 = APIRouter(prefix=V1, tags=["stream"])

Format = Callable[[events.Event], ServerSentEvent | None]


def _v2_event(event: events.Event) -> ServerSentEvent:
    return ServerSentEvent(data=event.to_json(), event=event.subject, id=str(event.sequence))


def _v1_event(event: events.Event) -> ServerSentEvent | None:
    data = mappers_v1.stream_event(event)
    if data is None:
        return None
    return ServerSentEvent(data=orjson.dumps(data).decode(), id=str(event.sequence))


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


async def _subscribe(
    js: JetStreamContext, gateway: Gateway, plan: replay.Replay
) -> JetStreamContext.PushSubscription:
    settings = gateway.settings
    return await js.subscribe(
        subject_for(settings, "polar.>"),
        stream=EVENTS.stream_name(settings.nats_prefix),
        ordered_consumer=True,
        deliver_policy=plan.policy,
        config=plan.consumer_config(),
        idle_heartbeat=5,
    )


async def _events(
    request: Request,
    gateway: Gateway,
    stream: OpenStream,
    plan: replay.Replay,
    format: Format = _v2_event,
) -> AsyncIterator[ServerSentEvent]:
    js = gateway.bus.jetstream()
    sub = await _subscribe(js, gateway, plan)
    channels = stream.channels
    STREAM_CLIENTS.inc()
    try:
        # Tells the client the subscription is live: what is published from now on arrives.
        yield ServerSentEvent(comment="ready")
        while True:
            try:
                msg = await stream.next_message(sub, gateway.settings.stream_ping_seconds)
            except StreamEnded:
                return
            if msg is None:
                if await request.is_disconnected():
                    return
                continue
            if msg.metadata.sequence.stream < plan.skip_before:
                continue
            event = events.decode(
                msg.metadata.sequence.stream,
                strip_prefix(gateway.settings, msg.subject),
                msg.data,
                msg.headers,
            )
            if event is None:
                continue
            send, keep_open = channels.process(event)
            sse = format(event) if send else None
            if sse is not None:
                STREAM_EVENTS.inc()
                yield sse
            if not keep_open:
                return
    finally:
        STREAM_CLIENTS.dec()
        gateway.live.close(stream)
        await asyncio.shield(_close(js, sub, gateway))


async def _close(
    js: JetStreamContext, sub: JetStreamContext.PushSubscription, gateway: Gateway
) -> None:
    with contextlib.suppress(Exception):
        await sub.unsubscribe()
    # Delete the consumer now rather than when its inactivity threshold expires.
    name = getattr(sub, "_consumer", None)
    if isinstance(name, str):
        with contextlib.suppress(Exception):
            await js.delete_consumer(EVENTS.stream_name(gateway.settings.nats_prefix), name)


@router.get(
    "/stream",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"},
        **errors(401, 403, 404, 422, 503),
    },
)
async def stream(
    request: Request,
    session: CurrentSession,
    gateway: GatewayDep,
    organization_id: Annotated[uuid.UUID | None, Query()] = None,
    repository_id: Annotated[uuid.UUID | None, Query()] = None,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
) -> EventSourceResponse:
    start = _start_sequence(last_event_id)
    js = gateway.bus.jetstream()  # 503 now rather than a stream that ends at once
    channels = await _channels(
        gateway,
        session.user_id,
        str(organization_id) if organization_id else None,
        str(repository_id) if repository_id else None,
    )
    plan = await replay.plan(js, gateway.settings, session.user_id, start)
    channels.joined = plan.joined
    stream = gateway.live.open(session, channels, lambda: still_valid(gateway, session))
    return EventSourceResponse(
        _events(request, gateway, stream, plan),
        ping=gateway.settings.stream_ping_seconds,
        send_timeout=gateway.settings.stream_send_timeout_seconds,
    )


@router_v1.get(
    "/stream",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"},
        **v1_errors(401, 403, 404, 422, 503),
    },
)
async def stream_v1(
    request: Request,
    session: CurrentSession,
    gateway: GatewayDep,
    organization_id: Annotated[uuid.UUID, Query()],
    repository_id: Annotated[uuid.UUID | None, Query()] = None,
    last_event_id: Annotated[str | None, Header(max_length=32, include_in_schema=False)] = None,
) -> EventSourceResponse:
    start = _start_sequence(last_event_id)
    js = gateway.bus.jetstream()
    channels = await _channels(
        gateway,
        session.user_id,
        str(organization_id),
        str(repository_id) if repository_id else None,
    )
    plan = await replay.plan(js, gateway.settings, session.user_id, start)
    channels.joined = plan.joined
    stream = gateway.live.open(session, channels, lambda: still_valid(gateway, session))
    return EventSourceResponse(
        _events(request, gateway, stream, plan, _v1_event),
        ping=gateway.settings.stream_ping_seconds,
        send_timeout=gateway.settings.stream_send_timeout_seconds,
    )
