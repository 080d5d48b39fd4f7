"""Who may do what: member, non-member and anonymous on every route; bad input on every route.

A member gets 2xx; a signed-in non-member 403 (404 for installations GitHub does not show
them, and for repositories: the same 404 as for a missing one); anonymous 401. Bad input is
a 4xx with the one error shape, never a 5xx.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from gateway_support import GitHubWorld, Install, MakeRepos, Member, Seed, SignIn
from polar_dev.fake_github import FakeGitHub


@dataclass
class World:
    member: Member
    outsider: Member
    org_id: str
    org_name: str
    repo_id: str
    repo_name: str
    issue_id: str
    installation_id: int  # visible on GitHub to the member only


@pytest.fixture
async def world_(
    sign_in: SignIn,
    install: Install,
    make_repos: MakeRepos,
    seed: Seed,
    world: GitHubWorld,
    github: FakeGitHub,
) -> World:
    member, outsider = await sign_in(), await sign_in()
    org = await install(member)
    [repo] = await make_repos(org)
    [issue_id] = await seed.issues(repo, 1)
    installation = world.new_installation(member.github)
    return World(
        member, outsider, org.id, org.name, repo.id, repo.name, issue_id, installation["id"]
    )


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # str.format()ed with the World's fields
    body: Callable[[World], Any] | None = None
    ok: int = 200
    outsider: int = 403  # what a signed-in non-member gets
    stream: bool = False


ROUTES = {
    "me": Route("GET", "/api/v2/users/me", outsider=200),
    "patch me": Route("PATCH", "/api/v2/users/me", body=lambda w: {}, outsider=200),
    "my organizations": Route("GET", "/api/v2/user/organizations", outsider=200),
    "install": Route(
        "POST",
        "/api/v2/integrations/github/installations",
        body=lambda w: {"platform": "github", "external_id": w.installation_id},
        outsider=404,
    ),
    "organization": Route("GET", "/api/v2/organizations/{org_id}"),
    "repository": Route("GET", "/api/v2/repositories/{repo_id}", outsider=404),
    "repository sync": Route("GET", "/api/v2/repositories/{repo_id}/sync", outsider=404),
    "issues": Route("GET", "/api/v2/issues/github/{org_name}/{repo_name}", outsider=404),
    "pull requests": Route(
        "GET", "/api/v2/pull_requests/github/{org_name}/{repo_name}", outsider=404
    ),
    "create reward": Route(
        "POST",
        "/api/v2/rewards",
        body=lambda w: {"issue_id": w.issue_id, "amount": {"currency": "EUR", "amount": 500}},
        ok=201,
    ),
    "rewards": Route("GET", "/api/v2/rewards/github/{org_name}/{repo_name}", outsider=404),
    "stream of an organization": Route(
        "GET", "/api/v2/stream?organization_id={org_id}", stream=True
    ),
    "stream of a repository": Route(
        "GET", "/api/v2/stream?repository_id={repo_id}", outsider=404, stream=True
    ),
    "stream of the user": Route("GET", "/api/v2/stream", outsider=200, stream=True),
}


async def _call(client: httpx.AsyncClient, route: Route, w: World, who: Member | None) -> int:
    headers = who.headers if who else {}
    path = route.path.format(**vars(w))
    body = route.body(w) if route.body else None
    if route.stream:
        async with client.stream(route.method, path, headers=headers) as response:
            if response.status_code >= 400:
                await response.aread()
                assert "error" in response.json()
            return response.status_code
    response = await client.request(route.method, path, headers=headers, json=body)
    if response.status_code >= 400:
        assert set(response.json()["error"]) >= {"code", "message", "request_id"}
    return response.status_code


@pytest.mark.parametrize("name", ROUTES)
async def test_authorization_matrix(client: httpx.AsyncClient, world_: World, name: str) -> None:
    route = ROUTES[name]
    assert await _call(client, route, world_, None) == 401
    assert await _call(client, route, world_, world_.outsider) == route.outsider
    assert await _call(client, route, world_, world_.member) == route.ok


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "/api/v2/users/me", b"{not json"),
        ("PATCH", "/api/v2/users/me", b"[]"),
        ("PATCH", "/api/v2/users/me", {"email": "me@example.com"}),
        ("GET", "/api/v2/user/organizations?limit=0", None),
        ("GET", "/api/v2/user/organizations?limit=101", None),
        ("GET", "/api/v2/user/organizations?limit=many", None),
        ("GET", "/api/v2/user/organizations?cursor=garbage!", None),
        ("POST", "/api/v2/integrations/github/installations", b"{not json"),
        ("POST", "/api/v2/integrations/github/installations", {}),
        (
            "POST",
            "/api/v2/integrations/github/installations",
            {"platform": "gitlab", "external_id": 1},
        ),
        (
            "POST",
            "/api/v2/integrations/github/installations",
            {"platform": "github", "external_id": "x"},
        ),
        (
            "POST",
            "/api/v2/integrations/github/installations",
            {"platform": "github", "external_id": -1},
        ),
        (
            "POST",
            "/api/v2/integrations/github/installations",
            {"platform": "github", "external_id": 2**64},
        ),
        (
            "POST",
            "/api/v2/integrations/github/installations",
            {"platform": "github", "external_id": 1, "x": 1},
        ),
        (
            "POST",
            "/api/v2/integrations/github/installations",
            {"platform": "github", "external_id": 999_999_999},
        ),
        ("GET", "/api/v2/organizations/not-a-uuid", None),
        ("GET", "/api/v2/organizations/{random}", None),
        ("GET", "/api/v2/repositories/123", None),
        ("GET", "/api/v2/repositories/{random}", None),
        ("GET", "/api/v2/repositories/123/sync", None),
        ("GET", "/api/v2/repositories/{random}/sync", None),
        ("GET", "/api/v2/issues/gitlab/{org_name}/{repo_name}", None),
        ("GET", "/api/v2/issues/github/bad%20name/{repo_name}", None),
        ("GET", "/api/v2/issues/github/{org_name}/{repo_name}?state=maybe", None),
        ("GET", "/api/v2/issues/github/{org_name}/{repo_name}?limit=-1", None),
        ("GET", "/api/v2/issues/github/{org_name}/{repo_name}?cursor=garbage!", None),
        ("GET", "/api/v2/pull_requests/github/{org_name}/{repo_name}?cursor=AAAA", None),
        ("GET", "/api/v2/pull_requests/github/{org_name}/unknown-repo", None),
        ("GET", "/api/v2/rewards/github/{org_name}/{repo_name}?cursor=garbage!", None),
        ("POST", "/api/v2/rewards", b"{not json"),
        (
            "POST",
            "/api/v2/rewards",
            {"issue_id": "nope", "amount": {"currency": "USD", "amount": 1}},
        ),
        (
            "POST",
            "/api/v2/rewards",
            {"issue_id": "{random}", "amount": {"currency": "USD", "amount": 1}},
        ),
        (
            "POST",
            "/api/v2/rewards",
            {"issue_id": "{issue_id}", "amount": {"currency": "USD", "amount": 0}},
        ),
        (
            "POST",
            "/api/v2/rewards",
            {"issue_id": "{issue_id}", "amount": {"currency": "US", "amount": 1}},
        ),
        (
            "POST",
            "/api/v2/rewards",
            {"issue_id": "{issue_id}", "amount": {"currency": "USD", "amount": "a"}},
        ),
        (
            "POST",
            "/api/v2/rewards",
            {"issue_id": "{issue_id}", "amount": {"currency": "USD", "amount": 2**63}},
        ),
        ("POST", "/api/v2/rewards", {"issue_id": "{issue_id}", "amount": 5}),
        ("POST", "/api/v2/rewards", {"issue_id": "{issue_id}"}),
        ("GET", "/api/v2/stream?organization_id=nope", None),
        ("GET", "/api/v2/stream?organization_id={random}", None),
        ("GET", "/api/v2/stream?repository_id={random}", None),
        ("GET", "/api/v2/no/such/route", None),
        ("DELETE", "/api/v2/users/me", None),
    ],
)
async def test_bad_input_is_a_4xx(
    client: httpx.AsyncClient, world_: World, method: str, path: str, body: Any
) -> None:
    fields = vars(world_) | {"random": uuid.uuid4()}
    path = path.format(**fields)
    headers = world_.member.headers
    if isinstance(body, bytes):
        headers = headers | {"Content-Type": "application/json"}
        response = await client.request(method, path, content=body, headers=headers)
    else:
        if isinstance(body, dict):
            body = {k: v.format(**fields) if isinstance(v, str) else v for k, v in body.items()}
        response = await client.request(method, path, json=body, headers=headers)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    error = response.json()["error"]
    assert error["code"]
    assert error["message"]


async def test_last_event_id_must_be_an_event_id(client: httpx.AsyncClient, world_: World) -> None:
    headers = world_.member.headers | {"Last-Event-ID": "yesterday"}
    response = await client.get("/api/v2/stream", headers=headers)
    assert response.status_code == 422
