"""Issue 16, the live stream at scale: one shared feed per replica, fanned out.

Each test replays a finding of the issue: every connection had its own JetStream consumer
(1,000 per stream across replicas, then a 200 with a cut-off body), a reader that never
reads was kept (its events piled up), streams whose consumer was lost stayed open with no
events for good, and stream traffic shared the webhook's NATS connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import re
import socket
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from gateway_support import Install, Member, SignIn, StartGateway, metrics_text, sign
from nats.js import JetStreamContext
from polar_db.models import User
from polar_gateway.settings import GatewaySettings
from polar_gateway.testing import RunningGateway
from polar_kit.nats import EVENTS
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from test_gateway_stream import STREAM, Events, EventStream, connect

WEBHOOK = "/api/v2/integrations/github/webhook"


async def _consumers(js: JetStreamContext, settings: GatewaySettings) -> int:
    return (await js.stream_info(EVENTS.stream_name(settings.nats_prefix))).state.consumer_count


async def _received(stream: EventStream, events: Events, wanted: list[str]) -> list[str]:
    """The ids of this test's events, in order, until `wanted`'s last has come."""
    seen: list[str] = []
    while not seen or seen[-1] != wanted[-1]:
        frame = await stream.event()
        if frame["data"]["id"] in events.sent:
            seen.append(frame["data"]["id"])
    return seen


async def test_every_client_gets_exactly_its_events(
    client: httpx.AsyncClient,
    js: JetStreamContext,
    gateway_settings: GatewaySettings,
    sign_in: SignIn,
    install: Install,
) -> None:
    """Many streams over several organizations, from one subscription: each gets its
    organization's events, all of them, in order, and nobody else's."""
    events = Events(js, gateway_settings)
    members = [await sign_in() for _ in range(4)]
    orgs = [await install(member) for member in members]
    before = await _consumers(js, gateway_settings)
    async with contextlib.AsyncExitStack() as stack:
        streams = [
            (i % 4, await stack.enter_async_context(connect(client, members[i % 4])))
            for i in range(24)
        ]
        assert await _consumers(js, gateway_settings) <= before  # none per connection
        sent: list[list[str]] = [[] for _ in orgs]
        for n in range(40):
            sent[n % 4].append(await events.issue(orgs[n % 4].id))
        for owner, stream in streams:
            assert await _received(stream, events, sent[owner]) == sent[owner]


async def test_a_client_that_does_not_read_is_dropped_and_others_are_not_slowed(
    start_gateway: StartGateway,
    js: JetStreamContext,
    gateway_settings: GatewaySettings,
    sign_in: SignIn,
    install: Install,
) -> None:
    events = Events(js, gateway_settings)
    alice = await sign_in()
    org = await install(alice)
    async with (
        start_gateway(stream_buffer_events=32) as gateway,
        _raw_stream(gateway, alice) as stalled,
        _raw_stream(gateway, alice) as reader,
    ):
        loop = asyncio.get_running_loop()
        received = bytearray()

        async def read_all() -> None:
            while chunk := await loop.sock_recv(reader, 1 << 20):
                received.extend(chunk)

        reading = asyncio.create_task(read_all())
        # Large events: the stalled client's socket buffers fill (a few MB), then its 32
        # slots.
        sent = [await events.issue(org.id, title="x" * 100_000) for _ in range(150)]
        started = time.monotonic()
        while sent[-1].encode() not in received:
            assert time.monotonic() - started < 10, "the reader was slowed down"
            assert not reading.done(), "the reader was dropped"
            await asyncio.sleep(0.05)
        reading.cancel()
        ids = re.findall(rb'"id":"([0-9a-f-]{36})","type"', bytes(received))
        got = [i.decode() for i in ids if i.decode() in events.sent]
        assert got == sent
        assert 'polar_gateway_stream_ended_total{reason="slow"} 1.0' in await metrics_text()
        # Its connection is closed (the client reconnects and resumes with Last-Event-ID).
        assert await _closed(stalled, within=5)


@contextlib.asynccontextmanager
async def _raw_stream(gateway: RunningGateway, member: Member) -> AsyncIterator[socket.socket]:
    """A stream opened on a bare socket with a small receive buffer, read only by hand."""
    url = urlsplit(gateway.url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (url.hostname, url.port))
    request = (
        f"GET {STREAM} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Authorization: Bearer {member.token}\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b": ready" not in head:  # registered: nothing published from now on is missed
        head += await asyncio.wait_for(loop.sock_recv(sock, 4096), 10)
    assert head.startswith(b"HTTP/1.1 200"), head
    try:
        yield sock
    finally:
        sock.close()


async def _closed(sock: socket.socket, within: float) -> bool:
    """Reads everything the server sent; True when the connection ends."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(within):
            while await loop.sock_recv(sock, 1 << 20):
                pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


async def test_a_stream_that_loses_its_feed_ends_and_webhooks_go_on(
    start_gateway: StartGateway,
    js: JetStreamContext,
    gateway_settings: GatewaySettings,
    sign_in: SignIn,
    install: Install,
) -> None:
    """The feed has its own NATS connection: losing it ends the streams (their clients
    reconnect), refuses new ones with 503 until it is back, and webhook intake, on the
    other connection, does not notice."""
    events = Events(js, gateway_settings)
    alice = await sign_in()
    org = await install(alice)
    async with (
        start_gateway() as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=15) as http,
        connect(http, alice) as stream,
    ):
        feed = gateway.gateway.feed
        assert feed.nc is not None
        assert feed.nc is not gateway.gateway.bus.nc
        await feed.nc.close()  # the feed's connection is gone
        deadline = time.monotonic() + 5
        ended = False
        while not ended:
            assert time.monotonic() < deadline, "the stream outlived its feed"
            try:
                await stream.frame(within=max(0.01, deadline - time.monotonic()))
            except AssertionError:
                ended = True
        refused = await http.get(STREAM, headers=alice.headers)
        if refused.status_code == 503:  # unless the feed came back already
            assert refused.headers["retry-after"]
            assert refused.json()["error"]["code"] == "unavailable"
        body = b'{"action":"opened","issue":{}}'
        accepted = await http.post(
            WEBHOOK,
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": "issues",
                "X-GitHub-Delivery": f"feed-lost-{time.time_ns()}",
                "X-Hub-Signature-256": sign(body),
            },
        )
        assert accepted.status_code == 202, accepted.text
        await asyncio.wait_for(feed.ready.wait(), 15)  # back, on a new connection
        async with connect(http, alice) as again:
            wanted = await events.issue(org.id)
            assert await _received(again, events, [wanted]) == [wanted]


def _framework_coroutines() -> int:
    """Suspended coroutines of FastAPI's and Starlette's own code (the app's lifespan, and
    the layers of every request in progress)."""
    gc.collect()
    return sum(
        1
        for o in gc.get_objects()
        if inspect.iscoroutine(o)
        and o.cr_frame is not None
        and any(f"/{name}/" in o.cr_code.co_filename for name in ("fastapi", "starlette"))
    )


async def test_an_open_stream_keeps_none_of_the_frameworks_layers(
    client: httpx.AsyncClient, sign_in: SignIn
) -> None:
    """Open streams held the coroutines, closures and request objects of every framework
    layer they went through for as long as they lasted (~170 objects a stream, all traversed
    by each full collection of the cyclic GC, a pause of the event loop): the framework
    answers the request, then the stream is served past it (decision 0030)."""
    alice = await sign_in()
    before = _framework_coroutines()
    async with connect(client, alice), connect(client, alice):
        assert _framework_coroutines() == before


async def test_refused_streams_get_503_before_any_body(
    start_gateway: StartGateway, sign_in: SignIn
) -> None:
    alice = await sign_in()
    async with (
        start_gateway(stream_max_clients=1) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=15) as http,
        connect(http, alice),
    ):
        for path in (STREAM, "/api/v1/stream"):
            params = {"organization_id": "6c3a1f0e-0000-4000-8000-000000000000"}
            refused = await http.get(path, headers=alice.headers, params=params)
            assert refused.status_code == 503
            assert refused.headers["retry-after"]
            assert refused.headers["content-type"] == "application/json"


async def test_a_resume_catches_up_then_joins_the_feed_without_gap_or_repeat(
    client: httpx.AsyncClient,
    js: JetStreamContext,
    gateway_settings: GatewaySettings,
    sign_in: SignIn,
    install: Install,
) -> None:
    events = Events(js, gateway_settings)
    alice = await sign_in()
    org = await install(alice)
    async with connect(client, alice) as stream:
        first = await events.issue(org.id)
        seen = await stream.ours(events)
        assert seen["data"]["id"] == first
    missed = [await events.issue(org.id) for _ in range(30)]
    before = await _consumers(js, gateway_settings)

    async def publish_more() -> list[str]:
        return [await events.issue(org.id) for _ in range(30)]

    async with connect(client, alice, last_event_id=seen["id"]) as resumed:
        more = asyncio.create_task(publish_more())  # while it catches up
        received = await _received(resumed, events, [*missed, *(await more)])
    assert received == [*missed, *more.result()]
    deadline = time.monotonic() + 5
    while await _consumers(js, gateway_settings) > before:  # the catch-up consumer went
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)


async def test_a_deleted_members_stream_ends(
    start_gateway: StartGateway,
    sign_in: SignIn,
    install: Install,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Users are known to exist from their organization's member list (one call per
    organization, not one per stream): a deleted one is in no list, and GetUser says so."""
    alice = await sign_in()
    await install(alice)
    async with (
        start_gateway(stream_recheck_seconds=1) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=15) as http,
        connect(http, alice) as stream,
    ):
        await asyncio.sleep(1.5)  # a check or two answered by the member list
        async with sessionmaker.begin() as session:
            await session.execute(
                sa.update(User).where(User.id == alice.user_id).values(deleted_at=sa.func.now())
            )
        deadline = time.monotonic() + 5
        while True:
            try:
                await stream.frame(within=max(0.01, deadline - time.monotonic()))
            except AssertionError:
                break  # the stream ended
            except TimeoutError:
                raise AssertionError("the deleted user's stream stayed open") from None
