"""Helpers of the gateway tests (imported by conftest and the tests; pytest puts this
folder on sys.path)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import sqlalchemy as sa
from aiohttp import web
from polar_db.models import Issue, IssueState, Platform, PullRequest
from polar_dev.fake_github import FakeGitHub, json_response
from polar_dev.infra import free_port
from polar_gateway.testing import RunningGateway
from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

_ids = itertools.count(90_000_000)  # id ranges are disjoint across test modules: one database
WEBHOOK_SECRET = "test-webhook-secret"
CLIENT_ID = "Iv1.testclient"
CLIENT_SECRET = "test-client-secret"
SESSION_COOKIE = "polar"  # the cookie's name without Secure (dev mode, as here)
# /metrics is served on its own port (prometheus_client's server: one per process).
METRICS_PORT = free_port()


async def metrics_text() -> str:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{METRICS_PORT}/metrics")
    response.raise_for_status()
    return response.text


def next_id() -> int:
    return next(_ids)


@dataclass
class GitHubUser:
    id: int
    login: str
    token: str
    code: str
    email: str
    installations: list[dict[str, Any]] = field(default_factory=list)

    def profile(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "login": self.login,
            "avatar_url": f"https://avatars.example/{self.login}.png",
            "name": f"User {self.id}",
            "email": None,
            "type": "User",
        }


class GitHubWorld:
    """Users and their installations, found by OAuth code and token."""

    def __init__(self) -> None:
        self.by_code: dict[str, GitHubUser] = {}
        self.by_token: dict[str, GitHubUser] = {}

    def new_user(self) -> GitHubUser:
        n = next_id()
        user = GitHubUser(
            id=n,
            login=f"gw-user-{n}",
            token=f"gho_{secrets.token_hex(8)}",
            code=secrets.token_hex(8),
            email=f"gw-user-{n}@example.com",
        )
        self.by_code[user.code] = user
        self.by_token[user.token] = user
        return user

    def new_installation(self, user: GitHubUser, login: str | None = None) -> dict[str, Any]:
        n = next_id()
        installation = {
            "id": n,
            "account": {
                "login": login or f"gw-org-{n}",
                "id": n,
                "avatar_url": f"https://avatars.example/{n}.png",
                "type": "Organization",
            },
            "target_type": "Organization",
            "permissions": {"issues": "write", "metadata": "read"},
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "suspended_at": None,
            "suspended_by": None,
        }
        user.installations.append(installation)
        return installation

    def _user(self, request: web.Request) -> GitHubUser | None:
        _, _, token = request.headers.get("Authorization", "").partition(" ")
        return self.by_token.get(token.strip())

    def teach(self, github: FakeGitHub) -> None:
        async def access_token(request: web.Request) -> web.StreamResponse:
            form = await request.post()
            user = self.by_code.get(str(form.get("code", "")))
            if form.get("client_secret") != CLIENT_SECRET or user is None:
                return json_response(
                    {"error": "bad_verification_code", "error_description": "bad code"}
                )
            return json_response(
                {"access_token": user.token, "token_type": "bearer", "scope": "user:email"}
            )

        async def me(request: web.Request) -> web.StreamResponse:
            user = self._user(request)
            if user is None:
                return json_response({"message": "Bad credentials"}, 401)
            return json_response(user.profile())

        async def emails(request: web.Request) -> web.StreamResponse:
            user = self._user(request)
            if user is None:
                return json_response({"message": "Bad credentials"}, 401)
            return json_response([{"email": user.email, "primary": True, "verified": True}])

        async def installations(request: web.Request) -> web.StreamResponse:
            user = self._user(request)
            if user is None:
                return json_response({"message": "Bad credentials"}, 401)
            items = user.installations
            return json_response({"total_count": len(items), "installations": items})

        github.handle("POST", "/login/oauth/access_token", access_token)
        github.handle("GET", "/user", me)
        github.handle("GET", "/user/emails", emails)
        github.handle("GET", "/user/installations", installations)


@dataclass
class Member:
    user_id: str
    token: str
    github: GitHubUser

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def oauth_sign_in(http: httpx.AsyncClient, user: GitHubUser) -> httpx.Response:
    """The browser's path: authorize -> (GitHub) -> callback; returns the callback's answer."""
    authorize = await http.get("/api/v2/integrations/github/authorize", params={"return_to": "/x"})
    assert authorize.status_code == 307, authorize.text
    state = parse_qs(urlsplit(authorize.headers["location"]).query)["state"][0]
    return await http.get(
        "/api/v2/integrations/github/callback", params={"code": user.code, "state": state}
    )


@dataclass
class Org:
    id: str
    name: str
    installation_id: int


@dataclass
class Repo:
    id: str
    name: str
    organization_id: str


class Seed:
    """Issues and pull requests straight into the database (see the module docstring)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    def _values(self, repo: Repo, number: int, **extra: Any) -> dict[str, Any]:
        return {
            "id": uuid.uuid4(),
            "platform": Platform.github,
            "external_id": next_id(),
            "organization_id": uuid.UUID(repo.organization_id),
            "repository_id": uuid.UUID(repo.id),
            "number": number,
            "title": f"item {number}",
            "body": "it breaks",
            "state": IssueState.open if number % 2 else IssueState.closed,
            "author": {"id": 1, "login": "octocat", "avatar_url": None},
            "labels": [{"id": 7, "name": "bug", "color": "d73a4a"}],
            "assignees": [],
            "milestone": {"id": 3, "number": 1, "title": "v1", "state": "open"},
            "reactions": {"total_count": 2, "+1": 2, "heart": 0},
            "issue_created_at": datetime(2024, 1, 1, tzinfo=UTC),
        } | extra

    async def issues(self, repo: Repo, count: int) -> list[str]:
        rows = [self._values(repo, n) for n in range(1, count + 1)]
        async with self.sessionmaker.begin() as session:
            await session.execute(sa.insert(Issue), rows)
        return [str(r["id"]) for r in rows]

    async def pull_requests(self, repo: Repo, count: int) -> list[str]:
        rows = [
            self._values(repo, n, head={"ref": f"f-{n}"}, base={"ref": "main"}, is_draft=False)
            for n in range(1, count + 1)
        ]
        async with self.sessionmaker.begin() as session:
            await session.execute(sa.insert(PullRequest), rows)
        return [str(r["id"]) for r in rows]


StartGateway = Callable[..., AbstractAsyncContextManager[RunningGateway]]
SignIn = Callable[[], Awaitable[Member]]
Install = Callable[..., Awaitable[Org]]
MakeRepos = Callable[..., Awaitable[list[Repo]]]


def conforms(schema: Any, data: Any) -> Any:
    """`data` (a JSON answer) validated against its declared response schema."""
    return TypeAdapter(schema).validate_python(data)


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    """X-Hub-Signature-256 of a delivery, as GitHub computes it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
