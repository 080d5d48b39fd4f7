"""Fixtures of the reward service's tests: the reward service in process, with the real
repository and organization services it asks about issues, organizations and backers (also
in process), and row factories standing in for GitHub's data in those services' tables."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from polar.reward.v1.reward_service_pb2_grpc import RewardServiceStub
from polar_db.engine import create_engine, create_sessionmaker
from polar_db.models import IssueState, OrganizationStatus, Platform
from polar_db.models.base import ORGANIZATION, REPOSITORY
from polar_db.models.organization import Organization, User
from polar_db.models.repository import Issue, Repository
from polar_db.models.reward import SCHEMA
from polar_kit.grpc import RunningServer, start_server
from polar_kit.grpc.auth import operator_channel
from polar_organization.app import service_spec as organization_spec
from polar_organization.settings import OrganizationSettings
from polar_repository.app import service_spec as repository_spec
from polar_repository.settings import RepositorySettings
from polar_reward.app import service_spec
from polar_reward.directory import GrpcDirectory
from polar_reward.settings import RewardSettings
from polar_reward.testing import MakeIssues, MakeOrg, MakeRepo, MakeUser, Sessionmaker
from sqlalchemy.ext.asyncio import AsyncSession

if TYPE_CHECKING:
    from polar.reward.v1.reward_service_pb2_grpc import RewardServiceAsyncStub

_ids = itertools.count(40_000_000)


def _env(settings_env: dict[str, str]) -> dict[str, str]:
    return {k.removeprefix("POLAR_").lower(): v for k, v in settings_env.items()}


class NoSync:
    async def start(self, session: AsyncSession, repository_id: uuid.UUID) -> bool:
        return False


async def _start(spec: Any, settings: Any, sessionmaker: Sessionmaker) -> RunningServer:
    return await start_server(
        port=0, host="127.0.0.1", services=[spec], sessionmaker=sessionmaker, settings=settings
    )


@pytest.fixture(scope="session")
async def reward_sessionmaker(database_url: str) -> AsyncIterator[Sessionmaker]:
    """As the reward service acts: its role, within its schema (decision 0021). Its own
    fixture, not the plugin's `sessionmaker` (a session fixture, shared with the other
    packages' tests of the same run)."""
    engine = create_engine(database_url, owner=SCHEMA)
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture(scope="session")
async def admin_sessionmaker(database_url: str) -> AsyncIterator[Sessionmaker]:
    """The login user, every schema: seeds the other services' rows (GitHub's data)."""
    engine = create_engine(database_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture(scope="session")
async def others(
    settings_env: dict[str, str], database_url: str
) -> AsyncIterator[tuple[RunningServer, RunningServer]]:
    """The organization and repository services the reward service calls, each as itself."""
    org_settings = OrganizationSettings.model_validate(_env(settings_env))
    repo_settings = RepositorySettings.model_validate(_env(settings_env))
    engines = [create_engine(database_url, owner=o) for o in (ORGANIZATION, REPOSITORY)]
    org_db, repo_db = (create_sessionmaker(e) for e in engines)
    org = await _start(organization_spec(org_settings), org_settings, org_db)
    repo = await _start(repository_spec(repo_settings, NoSync()), repo_settings, repo_db)
    yield org, repo
    await repo.stop(None)
    await org.stop(None)
    for engine in engines:
        await engine.dispose()


@pytest.fixture(scope="session")
def reward_settings(
    settings_env: dict[str, str], others: tuple[RunningServer, RunningServer]
) -> RewardSettings:
    org, repo = others
    env = _env(settings_env) | {
        "organization_grpc_target": f"127.0.0.1:{org.port}",
        "repository_grpc_target": f"127.0.0.1:{repo.port}",
        # Short retries, so tests see a message parked in seconds.
        "consumer_max_attempts": "3",
        "consumer_retry_base_seconds": "0.2",
        "consumer_retry_max_seconds": "0.5",
    }
    return RewardSettings.model_validate(env)


@pytest.fixture(scope="session")
async def reward_server(
    reward_settings: RewardSettings, reward_sessionmaker: Sessionmaker
) -> AsyncIterator[RunningServer]:
    directory = GrpcDirectory(reward_settings)
    running = await _start(service_spec(directory), reward_settings, reward_sessionmaker)
    yield running
    await running.stop(None)
    await directory.close()


@pytest.fixture(scope="session")
async def reward_channel(
    reward_server: RunningServer, reward_settings: RewardSettings
) -> AsyncIterator[grpc.aio.Channel]:
    async with operator_channel(f"127.0.0.1:{reward_server.port}", reward_settings) as channel:
        yield channel


@pytest.fixture(scope="session")
def reward_stub(reward_channel: grpc.aio.Channel) -> RewardServiceAsyncStub:
    return RewardServiceStub(reward_channel)


# --- rows of the other services ---------------------------------------------------------------


@pytest.fixture
def make_org(admin_sessionmaker: Sessionmaker) -> MakeOrg:
    async def make(**overrides: Any) -> Organization:
        n = next(_ids)
        values: dict[str, Any] = {
            "id": uuid.uuid4(),
            "platform": Platform.github,
            "name": f"org-{n}",
            "external_id": n,
            "is_personal": False,
            "installation_id": n,
            "status": OrganizationStatus.active,
        }
        async with admin_sessionmaker.begin() as session:
            org = Organization(**(values | overrides))
            session.add(org)
        return org

    return make


@pytest.fixture
def make_repo(admin_sessionmaker: Sessionmaker, make_org: MakeOrg) -> MakeRepo:
    async def make(org: Organization | None = None) -> Repository:
        org = org or await make_org()
        n = next(_ids)
        async with admin_sessionmaker.begin() as session:
            repo = Repository(
                id=uuid.uuid4(),
                platform=Platform.github,
                external_id=n,
                organization_id=org.id,
                name=f"repo-{n}",
            )
            session.add(repo)
        return repo

    return make


@pytest.fixture
def make_issues(admin_sessionmaker: Sessionmaker) -> MakeIssues:
    async def make(repo: Repository, count: int = 1) -> list[Issue]:
        issues = [
            Issue(
                id=uuid.uuid4(),
                platform=Platform.github,
                external_id=next(_ids),
                organization_id=repo.organization_id,
                repository_id=repo.id,
                number=i + 1,
                title=f"issue {i + 1}",
                state=IssueState.open,
                issue_created_at=datetime(2024, 1, 1, tzinfo=UTC),
            )
            for i in range(count)
        ]
        async with admin_sessionmaker.begin() as session:
            session.add_all(issues)
        return issues

    return make


@pytest.fixture
def make_user(admin_sessionmaker: Sessionmaker) -> MakeUser:
    async def make() -> User:
        n = next(_ids)
        async with admin_sessionmaker.begin() as session:
            user = User(id=uuid.uuid4(), username=f"user-{n}", email=f"user-{n}@example.com")
            session.add(user)
        return user

    return make
