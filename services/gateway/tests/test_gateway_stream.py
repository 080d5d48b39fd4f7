"""The live stream: only the user's channels, membership changes followed, resume by id."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
from gateway_support import Install, MakeRepos, Member, SignIn, metrics_text
from google.protobuf.message import Message
from nats.js import JetStreamContext
from polar.organization.v1 import events_pb2 as org_events
from polar.organization.v1 import organization_pb2
from polar.repository.v1 import events_pb2 as repo_events
from polar.repository.v1 import repository_pb2
from polar_gateway.settings import GatewaySettings
from polar_kit.nats import publish

STREAM = "/api/v2/stream"


class EventStream:
    """Reads SSE frames: {"id", "event", "data"} dicts, or {"comment"} for comment lines."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def frame(self, within: float = 10) -> dict[str, Any]:
        frame: dict[str, Any] = {}
        async with asyncio.timeout(within):
            async for line in self._lines:
                if line == "":
                    if frame:
                        return frame
                    continue
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "":
                    return {"comment": value}
                frame[field] = json.loads(value) if field == "data" else value
        raise AssertionError("the stream ended")

    async def event(self, within: float = 10) -> dict[str, Any]:
        """The next event, skipping comments (ready, pings)."""
        while True:
            frame = await self.frame(within)
            if "comment" not in frame:
                return frame

    async def ours(self, events: Events, *, forbidden: str | None = None) -> dict[str, Any]:
        """The next event this test published. The services' own events about the test's
        user (user_created, member_added... relayed a moment later) may come in between:
        they are skipped, after checking they do not mention `forbidden`."""
        while True:
            frame = await self.event()
            if frame["data"]["id"] in events.sent:
                return frame
            assert forbidden is None or forbidden not in json.dumps(frame), frame


@asynccontextmanager
async def connect(
    client: httpx.AsyncClient, member: Member, **params: str
) -> AsyncIterator[EventStream]:
    headers = member.headers
    if "last_event_id" in params:
        headers = headers | {"Last-Event-ID": params.pop("last_event_id")}
    async with client.stream("GET", STREAM, params=params, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = EventStream(response)
        assert await stream.frame() == {"comment": "ready"}  # subscribed: nothing missed now
        yield stream


class Events:
    """Publishes domain events as the outbox relay does (subject, protobuf, ce- headers)."""

    def __init__(self, js: JetStreamContext, settings: GatewaySettings) -> None:
        self.js, self.settings = js, settings
        self.sent: set[str] = set()

    async def send(self, subject: str, message: Message) -> str:
        event_id = str(uuid.uuid4())
        self.sent.add(event_id)
        await publish(
            self.js,
            self.settings.nats_prefix + subject,
            message.SerializeToString(),
            msg_id=event_id,
            headers={
                "ce-specversion": "1.0",
                "ce-id": event_id,
                "ce-type": message.DESCRIPTOR.full_name,
                "ce-source": "/tests",
                "ce-time": datetime.now(UTC).isoformat(),
                "content-type": "application/protobuf",
            },
        )
        return event_id

    async def issue(self, org_id: str, repo_id: str | None = None, title: str = "t") -> str:
        issue = repository_pb2.Issue(
            id=str(uuid.uuid4()),
            organization_id=org_id,
            repository_id=repo_id or str(uuid.uuid4()),
            title=title,
        )
        return await self.send(
            "polar.repository.v1.issue_created", repo_events.IssueCreated(issue=issue)
        )


async def test_a_user_gets_the_events_of_their_organizations_only(
    client: httpx.AsyncClient,
    js: JetStreamContext,
    gateway_settings: GatewaySettings,
    sign_in: SignIn,
    install: Install,
) -> None:
    events = Events(js, gateway_settings)
    alice, bob = await sign_in(), await sign_in()
    alices, bobs = await install(alice), await install(bob)
    async with connect(client, alice) as stream:
        await events.issue(bobs.id)
        mine = await events.issue(alices.id)
        event = await stream.ours(events, forbidden=bobs.id)
        assert event["data"]["id"] == mine
        assert event["event"] == "polar.repository.v1.issue_created"
        assert event["data"]["data"]["issue"]["organization_id"] == alices.id
        assert int(event["id"]) > 0


async def test_an_organization_channel_is_only_that_organization(
    client: httpx.AsyncClient,
    js: JetStreamContext,
    gateway_settings: GatewaySettings,
    sign_in: SignIn,
    install: Install,
) -> None:
    events = Events(js, gateway_settings)
    alice = await sign_in()
    first, second = await install(alice), await install(alice)
    async with connect(client, alice, organization_id=first.id) as stream:
        await events.issue(second.id)
        await events.send(
            "polar.organization.v1.user_updated",
            org_events.UserUpdated(user=organization_pb2.User(id=alice.user_id, username="a")),
        )
        wanted = await events.issue(first.id)
        assert (await stream.ours(events, forbidden=second.id))["data"]["id"] == wanted


async def test_a_repository_channel_is_only_that_repository(
    client: httpx.AsyncClient,
    js: JetStreamContext,
    gateway_settings: GatewaySettings,
    sign_in: SignIn,
    install: Install,
    make_repos: MakeRepos,
) -> None:
    events = Events(js, gateway_settings)
    alice = await sign_in()
    org = await install(alice)
    one, two = await make_repos(org, count=2)
    async with connect(client, alice, repository_id=one.id) as stream:
        await events.issue(org.id, two.id)
        wanted = await events.issue(org.id, one.id)
        assert (await stream.ours(events, forbidden=two.id))["data"]["id"] == wanted


async def test_the_users_own_channel(
    client: httpx.AsyncClient,
    js: JetStreamContext,
    gateway_settings: GatewaySettings,
    sign_in: SignIn,
) -> None:
    events = Events(js, gateway_settings)
    alice, bob = await sign_in(), await sign_in()
    async with connect(client, alice) as stream:
        for who in (bob, alice):
            user = organization_pb2.User(id=who.user_id, username=who.github.login)
            await events.send(
                "polar.organization.v1.user_updated", org_events.UserUpdated(user=user)
            )
        event = await stream.ours(events, forbidden=bob.user_id)
        assert event["data"]["data"]["user"]["id"] == alice.user_id


async def test_memberships_are_followed_while_connected(
    client: httpx.AsyncClient,
    js: JetStreamContext,
    gateway_settings: GatewaySettings,
    sign_in: SignIn,
) -> None:
    events = Events(js, gateway_settings)
    alice = await sign_in()
    org_id = str(uuid.uuid4())
    async with connect(client, alice) as stream:
        await events.issue(org_id)  # not hers (yet)
        member = organization_pb2.Member(user_id=alice.user_id, organization_id=org_id)
        await events.send(
            "polar.organization.v1.member_added", org_events.MemberAdded(member=member)
        )
        assert (await stream.ours(events))["event"] == "polar.organization.v1.member_added"
        now_hers = await events.issue(org_id)
        assert (await stream.ours(events))["data"]["id"] == now_hers
        await events.send(
            "polar.organization.v1.member_removed",
            org_events.MemberRemoved(organization_id=org_id, user_id=alice.user_id),
        )
        assert (await stream.ours(events))["event"] == "polar.organization.v1.member_removed"
        await events.issue(org_id)  # no longer hers
        marker = await events.send(
            "polar.organization.v1.user_updated",
            org_events.UserUpdated(user=organization_pb2.User(id=alice.user_id, username="a")),
        )
        assert (await stream.ours(events))["data"]["id"] == marker


async def test_resume_from_last_event_id(
    client: httpx.AsyncClient,
    js: JetStreamContext,
    gateway_settings: GatewaySettings,
    sign_in: SignIn,
    install: Install,
) -> None:
    events = Events(js, gateway_settings)
    alice, bob = await sign_in(), await sign_in()
    alices, bobs = await install(alice), await install(bob)
    async with connect(client, alice) as stream:
        first = await events.issue(alices.id)
        seen = await stream.ours(events)
        assert seen["data"]["id"] == first
    # Disconnected: these happen meanwhile.
    await events.issue(bobs.id)
    missed = await events.issue(alices.id)
    also_missed = await events.issue(alices.id)
    async with connect(client, alice, last_event_id=seen["id"]) as stream:
        resumed = [
            await stream.ours(events, forbidden=bobs.id),
            await stream.ours(events, forbidden=bobs.id),
        ]
    assert [e["data"]["id"] for e in resumed] == [missed, also_missed]
    assert int(resumed[0]["id"]) > int(seen["id"])


async def test_heartbeats_and_clean_up_on_disconnect(
    client: httpx.AsyncClient,
    sign_in: SignIn,
    js: JetStreamContext,
    gateway_settings: GatewaySettings,
) -> None:
    """Issue 16: a connection costs NATS nothing (the replica's one shared subscription
    feeds it), so the 1,000-consumers-per-stream limit never cuts streams off."""
    from polar_kit.nats import EVENTS

    alice = await sign_in()
    stream_name = EVENTS.stream_name(gateway_settings.nats_prefix)
    before = (await js.stream_info(stream_name)).state.consumer_count
    async with connect(client, alice) as stream, connect(client, alice) as other:
        # A ping every second here (events about alice, e.g. her user_created, may come first).
        for _ in range(10):
            frame = await stream.frame(within=5)
            if frame.get("comment", "").startswith("ping"):
                break
        else:
            raise AssertionError("no heartbeat")
        # (<=: consumers of earlier tests may expire meanwhile)
        assert (await js.stream_info(stream_name)).state.consumer_count <= before
        assert "polar_gateway_stream_clients 2.0" in await metrics_text()
        del other
    for _ in range(50):
        metrics = await metrics_text()
        if "polar_gateway_stream_clients 0.0" in metrics:
            break
        await asyncio.sleep(0.1)
    assert "polar_gateway_stream_clients 0.0" in metrics
    assert (await js.stream_info(stream_name)).state.consumer_count <= before


async def test_real_events_from_the_services(
    client: httpx.AsyncClient, sign_in: SignIn, install: Install, make_repos: MakeRepos
) -> None:
    """Through the outbox relay: installing makes the user a member, then the new
    organization's repositories show up on the user's stream."""
    alice = await sign_in()
    async with connect(client, alice) as stream:
        org = await install(alice)
        seen = []
        while True:
            event = await stream.event(within=15)
            seen.append(event["event"])
            if event["event"] == "polar.organization.v1.member_added":
                assert event["data"]["data"]["member"]["organization_id"] == org.id
                break
        [repo] = await make_repos(org)
        while True:
            event = await stream.event(within=15)
            seen.append(event["event"])
            if event["event"].startswith("polar.repository.v1.repository_"):
                assert event["data"]["data"]["repository"]["id"] == repo.id
                break
