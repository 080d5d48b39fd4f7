"""Fixtures of the repository service's tests: settings, an in-process gRPC server, a stub,
and row factories.

The repository service keeps its own read model of organizations (known.py); tests
insert those rows directly, standing in for the organization service's events. The tests
act as the service does: as its role, within its schema (`engine`, `sessionmaker`).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import sqlalchemy as sa
from polar.repository.v1.repository_service_pb2_grpc import RepositoryServiceStub
from polar_db.models import IssueState, OrganizationStatus, Platform
from polar_db.models.repository import (
    SCHEMA,
    Issue,
    PullRequest,
    Repository,
)
from polar_db.models.repository import KnownOrganization as Organization
from polar_dev.pytest_plugin import service_database_fixtures
from polar_kit.grpc import RunningServer, start_server
from polar_kit.grpc.auth import operator_channel
from polar_kit.settings import ServiceSettings
from polar_repository.app import service_spec
from polar_repository.settings import RepositorySettings
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

if TYPE_CHECKING:
    from polar.repository.v1.repository_service_pb2_grpc import RepositoryServiceAsyncStub

# External ids (GitHub's) unique across the session; far from the fixtures' real ids.
_ids = itertools.count(20_000_000)
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def next_id() -> int:
    return next(_ids)


class FakeSync:
    """Stands in for the GitHub sync in servicer tests: records what it was asked to start."""

    def __init__(self) -> None:
        self.started: list[uuid.UUID] = []
        self.running: set[uuid.UUID] = set()

    async def start(self, session: AsyncSession, repository_id: uuid.UUID) -> bool:
        if repository_id in self.running:
            return False
        self.running.add(repository_id)
        self.started.append(repository_id)
        return True


engine, sessionmaker = service_database_fixtures(SCHEMA)


@pytest.fixture(scope="session")
def settings(settings_env: dict[str, str]) -> RepositorySettings:
    env = {k.removeprefix("POLAR_").lower(): v for k, v in settings_env.items()}
    # Short retries and waits for a parent, so tests see a message parked in seconds.
    env |= {
        "consumer_max_attempts": "3",
        "consumer_retry_base_seconds": "0.2",
        "consumer_retry_max_seconds": "0.5",
        "consumer_wait_max_seconds": "4",
    }
    return RepositorySettings.model_validate(env)


@pytest.fixture(scope="session")
def fake_sync() -> FakeSync:
    return FakeSync()


@pytest.fixture(scope="session")
async def server(
    settings: RepositorySettings,
    sessionmaker: async_sessionmaker[AsyncSession],
    fake_sync: FakeSync,
) -> AsyncIterator[RunningServer]:
    running = await start_server(
        port=0,
        host="127.0.0.1",
        services=[service_spec(settings, fake_sync)],
        sessionmaker=sessionmaker,
        settings=settings,
    )
    yield running
    await running.stop(None)


@pytest.fixture(scope="session")
async def channel(
    server: RunningServer, settings: ServiceSettings
) -> AsyncIterator[grpc.aio.Channel]:
    async with operator_channel(f"127.0.0.1:{server.port}", settings) as channel:
        yield channel


@pytest.fixture(scope="session")
def stub(channel: grpc.aio.Channel) -> RepositoryServiceAsyncStub:
    return RepositoryServiceStub(channel)


# --- row values (plain dicts, usable with sa.insert or upsert_many) ---------------------------


def organization_values(**overrides: Any) -> dict[str, Any]:
    n = next_id()
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "platform": Platform.github,
        "name": f"org-{n}",
        "external_id": n,
        "installation_id": n,
        "status": OrganizationStatus.active,
        "version": 1,
    }
    return values | overrides


def repository_values(organization_id: uuid.UUID, **overrides: Any) -> dict[str, Any]:
    n = next_id()
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "platform": Platform.github,
        "external_id": n,
        "organization_id": organization_id,
        "name": f"repo-{n}",
        "description": "a repository",
        "stars": 3,
        "topics": ["python"],
        "is_private": False,
    }
    return values | overrides


def issue_values(repo: Repository, number: int, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "platform": Platform.github,
        "external_id": next_id(),
        "organization_id": repo.organization_id,
        "repository_id": repo.id,
        "number": number,
        "title": f"issue {number}",
        "body": "it breaks",
        "state": IssueState.open,
        "author": {"id": 1, "login": "octocat", "avatar_url": "https://example.com/a.png"},
        "labels": [{"id": 7, "name": "bug", "color": "d73a4a"}],
        "assignees": [],
        "milestone": {"title": "v1"},
        "reactions": {"total_count": 2},
        "issue_created_at": EPOCH + timedelta(minutes=number),
    }
    return values | overrides


def pull_request_values(repo: Repository, number: int, **overrides: Any) -> dict[str, Any]:
    values = issue_values(repo, number, title=f"pull request {number}")
    values |= {
        "is_draft": False,
        "is_merged": False,
        "head": {"ref": f"feature-{number}"},
        "base": {"ref": "main"},
        "requested_reviewers": [{"id": 2, "login": "hubot"}],
    }
    return values | overrides


# --- factories ---------------------------------------------------------------------------------

MakeOrg = Callable[..., Awaitable[Organization]]
MakeRepo = Callable[..., Awaitable[Repository]]
MakeIssues = Callable[..., Awaitable[list[Issue]]]
MakePullRequests = Callable[..., Awaitable[list[PullRequest]]]


@pytest.fixture
def make_org(sessionmaker: async_sessionmaker[AsyncSession]) -> MakeOrg:
    async def make(**overrides: Any) -> Organization:
        async with sessionmaker.begin() as session:
            org = Organization(**organization_values(**overrides))
            session.add(org)
        return org

    return make


@pytest.fixture
def make_repo(sessionmaker: async_sessionmaker[AsyncSession], make_org: MakeOrg) -> MakeRepo:
    """make_repo(org=None, **columns): a repository (of a new organization unless given)."""

    async def make(org: Organization | None = None, **overrides: Any) -> Repository:
        org = org or await make_org()
        async with sessionmaker.begin() as session:
            repo = Repository(**repository_values(org.id, **overrides))
            session.add(repo)
        return repo

    return make


@pytest.fixture
def make_issues(sessionmaker: async_sessionmaker[AsyncSession]) -> MakeIssues:
    """make_issues(repo, count, start=1, **columns): issues numbered start..start+count-1."""

    async def make(
        repo: Repository, count: int = 1, start: int = 1, **overrides: Any
    ) -> list[Issue]:
        rows = [issue_values(repo, n, **overrides) for n in range(start, start + count)]
        async with sessionmaker.begin() as session:
            return list(await session.scalars(sa.insert(Issue).returning(Issue), rows))

    return make


@pytest.fixture
def make_pull_requests(sessionmaker: async_sessionmaker[AsyncSession]) -> MakePullRequests:
    async def make(
        repo: Repository, count: int = 1, start: int = 1, **overrides: Any
    ) -> list[PullRequest]:
        rows = [pull_request_values(repo, n, **overrides) for n in range(start, start + count)]
        async with sessionmaker.begin() as session:
            return list(await session.scalars(sa.insert(PullRequest).returning(PullRequest), rows))

    return make
