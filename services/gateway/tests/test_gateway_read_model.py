"""Issue 16, the read path: GET /user/organizations from the gateway's read model.

The answer is kept in memory and follows the domain events: it carries an ETag (a client
that has it gets 304), a change reaches it as soon as its event arrives, and authorization
stays exact (a removal or an addition shows at once, another user's organizations never).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from gateway_support import Install, MakeRepos, Member, SignIn
from polar.organization.v1 import organization_service_pb2 as org_pb
from polar.organization.v1.organization_service_pb2_grpc import OrganizationServiceStub
from polar_gateway.settings import GatewaySettings
from polar_gateway.testing import RunningGateway
from polar_kit.grpc import RunningServer
from polar_kit.grpc.auth import operator_channel

if TYPE_CHECKING:
    from polar.organization.v1.organization_service_pb2_grpc import OrganizationServiceAsyncStub

V2 = "/api/v2/user/organizations"
V1 = "/api/v1/user/organizations"


@pytest.fixture
async def org_stub(
    organization_server: RunningServer, gateway_settings: GatewaySettings
) -> AsyncIterator[OrganizationServiceAsyncStub]:
    target = f"127.0.0.1:{organization_server.port}"
    async with operator_channel(target, gateway_settings) as channel:
        yield OrganizationServiceStub(channel)


def _v2_ids(body: Any) -> set[str]:
    return {o["id"] for o in body["items"]}


def _v1_ids(body: Any) -> set[str]:
    return {o["id"] for o in body}


async def _until(
    client: httpx.AsyncClient,
    member: Member,
    path: str,
    holds: Callable[[Any], bool],
    within: float = 5,
) -> float:
    """Seconds until the answer satisfies `holds`."""
    started = time.monotonic()
    while True:
        response = await client.get(path, headers=member.headers)
        assert response.status_code == 200, response.text
        if holds(response.json()):
            return time.monotonic() - started
        assert time.monotonic() - started < within, response.json()
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("path", [V2, V1])
async def test_etag_and_not_modified(
    client: httpx.AsyncClient, sign_in: SignIn, install: Install, make_repos: MakeRepos, path: str
) -> None:
    alice = await sign_in()
    org = await install(alice)
    await make_repos(org, count=3)
    first = await client.get(path, headers=alice.headers)
    assert first.status_code == 200
    tag = first.headers["etag"]
    again = await client.get(path, headers=alice.headers | {"If-None-Match": tag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == tag
    listed = await client.get(path, headers=alice.headers | {"If-None-Match": f'"x", W/{tag}'})
    assert listed.status_code == 304
    other = await client.get(path, headers=alice.headers | {"If-None-Match": '"stale"'})
    assert other.status_code == 200
    assert other.content == first.content
    # A change: a new ETag, and the old one no longer matches.
    await make_repos(org)
    await _until(client, alice, path, lambda body: body != first.json())
    changed = await client.get(path, headers=alice.headers | {"If-None-Match": tag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != tag


async def test_memberships_apply_at_once_and_answers_are_per_user(
    client: httpx.AsyncClient,
    sign_in: SignIn,
    install: Install,
    org_stub: OrganizationServiceAsyncStub,
) -> None:
    alice, bob = await sign_in(), await sign_in()
    hers, his = await install(alice), await install(bob)
    for path, ids in ((V2, _v2_ids), (V1, _v1_ids)):
        assert ids((await client.get(path, headers=alice.headers)).json()) == {hers.id}
        assert ids((await client.get(path, headers=bob.headers)).json()) == {his.id}
    await org_stub.AddMember(org_pb.AddMemberRequest(organization_id=his.id, user_id=alice.user_id))
    await _until(client, alice, V2, lambda b: _v2_ids(b) == {hers.id, his.id})
    await _until(client, alice, V1, lambda b: _v1_ids(b) == {hers.id, his.id})
    await org_stub.RemoveMember(
        org_pb.RemoveMemberRequest(organization_id=his.id, user_id=alice.user_id)
    )
    await _until(client, alice, V2, lambda b: _v2_ids(b) == {hers.id})
    await _until(client, alice, V1, lambda b: _v1_ids(b) == {hers.id})
    assert _v2_ids((await client.get(V2, headers=bob.headers)).json()) == {his.id}


async def test_repository_changes_show_as_their_events_arrive(
    client: httpx.AsyncClient,
    gateway: RunningGateway,
    sign_in: SignIn,
    install: Install,
    make_repos: MakeRepos,
) -> None:
    alice = await sign_in()
    org = await install(alice)
    [first] = await make_repos(org)
    await _until(
        client, alice, V2, lambda b: [r["id"] for r in b["items"][0]["repositories"]] == [first.id]
    )
    read_model = gateway.gateway.read_model
    deadline = time.monotonic() + 5
    while read_model.cached(alice.user_id, "v2") is None:  # kept once its events are in
        assert time.monotonic() < deadline
        await client.get(V2, headers=alice.headers)
        await asyncio.sleep(0.1)
    [second] = await make_repos(org)
    seconds = await _until(
        client, alice, V2, lambda b: second.id in {r["id"] for r in b["items"][0]["repositories"]}
    )
    assert seconds < 3  # the relay polls every 0.2 s here


async def test_without_the_feed_answers_come_from_the_services(
    start_gateway: Any, sign_in: SignIn, install: Install, make_repos: MakeRepos
) -> None:
    """A lost feed could miss events: the model is emptied and not used until it is back."""
    alice = await sign_in()
    org = await install(alice)
    async with (
        start_gateway() as running,
        httpx.AsyncClient(base_url=running.url, timeout=15) as http,
    ):
        read_model = running.gateway.read_model
        assert (await http.get(V2, headers=alice.headers)).status_code == 200
        assert read_model.cached(alice.user_id, "v2") is not None
        feed = running.gateway.feed
        assert feed.nc is not None
        await feed.nc.close()
        deadline = time.monotonic() + 5
        while read_model.enabled:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert read_model.cached(alice.user_id, "v2") is None
        [repo] = await make_repos(org)
        body = (await http.get(V2, headers=alice.headers)).json()
        if not read_model.enabled:  # still down: straight from the services
            assert repo.id in {r["id"] for r in body["items"][0]["repositories"]}
