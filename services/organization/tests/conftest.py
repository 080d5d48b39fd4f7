from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from polar.organization.v1 import organization_service_pb2 as pb
from polar.organization.v1.organization_service_pb2_grpc import OrganizationServiceStub
from polar_db.models.organization import SCHEMA

if TYPE_CHECKING:
    from polar.organization.v1.organization_service_pb2_grpc import OrganizationServiceAsyncStub
from polar_dev.pytest_plugin import service_database_fixtures
from polar_kit.grpc import RunningServer, start_server
from polar_kit.grpc.auth import operator_channel
from polar_kit.settings import ServiceSettings
from polar_organization.app import service_spec
from polar_organization.github import Installation
from polar_organization.service import upsert_installation
from polar_organization.settings import OrganizationSettings
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

_ids = itertools.count(10_000_000)


# The tests act as the service does: as its role, within its schema (decision 0021).
engine, sessionmaker = service_database_fixtures(SCHEMA)


@pytest.fixture(scope="session")
def settings(settings_env: dict[str, str]) -> OrganizationSettings:
    env = {k.removeprefix("POLAR_").lower(): v for k, v in settings_env.items()}
    # Short retries and waits for a parent, so tests see a message parked in seconds.
    env |= {
        "consumer_max_attempts": "3",
        "consumer_retry_base_seconds": "0.2",
        "consumer_retry_max_seconds": "0.5",
        "consumer_wait_max_seconds": "4",
    }
    return OrganizationSettings.model_validate(env)


@pytest.fixture(scope="session")
async def server(
    settings: OrganizationSettings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[RunningServer]:
    running = await start_server(
        port=0,
        host="127.0.0.1",
        services=[service_spec(settings)],
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
def stub(channel: grpc.aio.Channel) -> OrganizationServiceAsyncStub:
    return OrganizationServiceStub(channel)


def new_installation(**overrides: Any) -> Installation:
    n = next(_ids)
    values: dict[str, Any] = {
        "id": n,
        "account_id": n,
        "account_login": f"org-{n}",
        "account_avatar_url": None,
        "is_personal": False,
        "created_at": None,
        "updated_at": None,
        "suspended_at": None,
        "suspended_by": None,
        "permissions": {"issues": "write"},
    }
    return Installation(**(values | overrides))


@pytest.fixture
async def make_org(sessionmaker: async_sessionmaker[AsyncSession]) -> Any:
    async def make(**overrides: Any) -> uuid.UUID:
        async with sessionmaker.begin() as session:
            org = await upsert_installation(session, new_installation(**overrides))
            assert org is not None
            return org.id

    return make


@pytest.fixture
async def make_user(stub: OrganizationServiceAsyncStub) -> Any:
    async def make(**overrides: Any) -> pb.UpsertUserFromGitHubResponse:
        n = next(_ids)
        fields: dict[str, Any] = {
            "github_user_id": n,
            "login": f"user-{n}",
            "email": f"user-{n}@example.com",
            "email_verified": True,
            "access_token": f"gho_{n}",
        }
        response: pb.UpsertUserFromGitHubResponse = await stub.UpsertUserFromGitHub(
            pb.UpsertUserFromGitHubRequest(**(fields | overrides))
        )
        return response

    return make
