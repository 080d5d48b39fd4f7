"""The gateway over real HTTP, in front of the real organization, repository and reward
services.

The gRPC services run in-process on free ports against the session's PostgreSQL database;
the gateway runs in-process under uvicorn on a free port; NATS is the session's real server
(its own prefix); GitHub is the local fake, taught here to play the OAuth server and to know
users and installations per OAuth token (`GitHubWorld`). An outbox relay publishes the
services' domain events, as in production.

Issues and pull requests have no create RPC (they come from webhooks and the sync), so
`seed` inserts them with polar_db — test data only; the gateway itself never touches the
database.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from gateway_support import (
    CLIENT_ID,
    CLIENT_SECRET,
    METRICS_PORT,
    SESSION_COOKIE,
    WEBHOOK_SECRET,
    GitHubWorld,
    Install,
    MakeRepos,
    Member,
    Org,
    Repo,
    Seed,
    SignIn,
    StartGateway,
    next_id,
    oauth_sign_in,
)
from nats.js import JetStreamContext
from polar.repository.v1 import repository_service_pb2 as repo_pb
from polar.repository.v1.repository_service_pb2_grpc import RepositoryServiceStub
from polar_db.models import ORGANIZATION, REPOSITORY, REWARD
from polar_db.models.repository import KnownOrganization
from polar_dev.fake_github import FakeGitHub
from polar_gateway.settings import GatewaySettings
from polar_gateway.testing import RunningGateway, running_gateway
from polar_kit.grpc import RunningServer, start_server
from polar_kit.grpc.auth import operator_channel
from polar_kit.nats import ensure_streams
from polar_kit.outbox import OutboxRelay
from polar_kit.testing import eventually
from polar_organization.app import service_spec as organization_spec
from polar_organization.settings import OrganizationSettings
from polar_repository.app import service_spec as repository_spec
from polar_repository.consumers import ORGANIZATION_EVENTS_CONSUMER
from polar_repository.consumers import consumers as repository_consumers
from polar_repository.settings import RepositorySettings
from polar_reward.app import service_spec as reward_spec
from polar_reward.directory import GrpcDirectory
from polar_reward.settings import RewardSettings
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

if TYPE_CHECKING:
    from polar.repository.v1.repository_service_pb2_grpc import RepositoryServiceAsyncStub


# A real internal secret for the session's services and gateways: a gateway started outside
# development mode (the security tests) must not need the public development one.
INTERNAL_SECRET = secrets.token_hex(32)


def _env(settings_env: dict[str, str]) -> dict[str, str]:
    env = {k.removeprefix("POLAR_").lower(): v for k, v in settings_env.items()}
    return env | {"internal_secret": INTERNAL_SECRET}


# --- the services ------------------------------------------------------------------------------


class NoSync:
    async def start(self, session: AsyncSession, repository_id: uuid.UUID) -> bool:
        return False


Sessionmakers = dict[str, async_sessionmaker[AsyncSession]]


@pytest.fixture(scope="session")
async def organization_server(
    settings_env: dict[str, str], service_sessionmakers: Sessionmakers
) -> AsyncIterator[RunningServer]:
    settings = OrganizationSettings.model_validate(_env(settings_env))
    running = await start_server(
        port=0,
        host="127.0.0.1",
        services=[organization_spec(settings)],
        sessionmaker=service_sessionmakers[ORGANIZATION],
        settings=settings,
    )
    yield running
    await running.stop(None)


@pytest.fixture(scope="session")
async def repository_server(
    settings_env: dict[str, str], service_sessionmakers: Sessionmakers
) -> AsyncIterator[RunningServer]:
    settings = RepositorySettings.model_validate(_env(settings_env))
    running = await start_server(
        port=0,
        host="127.0.0.1",
        services=[repository_spec(settings, NoSync())],
        sessionmaker=service_sessionmakers[REPOSITORY],
        settings=settings,
    )
    yield running
    await running.stop(None)


@pytest.fixture(scope="session")
async def reward_server(
    settings_env: dict[str, str],
    service_sessionmakers: Sessionmakers,
    organization_server: RunningServer,
    repository_server: RunningServer,
) -> AsyncIterator[RunningServer]:
    """The reward service, asking the two above about issues, organizations and backers."""
    settings = RewardSettings.model_validate(
        _env(settings_env)
        | {
            "organization_grpc_target": f"127.0.0.1:{organization_server.port}",
            "repository_grpc_target": f"127.0.0.1:{repository_server.port}",
        }
    )
    directory = GrpcDirectory(settings)
    running = await start_server(
        port=0,
        host="127.0.0.1",
        services=[reward_spec(directory)],
        sessionmaker=service_sessionmakers[REWARD],
        settings=settings,
    )
    yield running
    await running.stop(None)
    await directory.close()


@pytest.fixture(scope="session")
async def relay(
    settings_env: dict[str, str],
    service_sessionmakers: Sessionmakers,
    js: JetStreamContext,
) -> AsyncIterator[None]:
    """Each service's outbox relay: their domain events reach the EVENTS stream; and the
    repository service's consumer of the organization service's events, which keeps its
    copy of organizations (decision 0021)."""
    settings = RepositorySettings.model_validate(
        _env(settings_env) | {"outbox_poll_seconds": "0.2"}
    )
    await ensure_streams(js, settings)
    workers: list[Any] = [
        OutboxRelay(maker, js, settings) for maker in service_sessionmakers.values()
    ]
    workers += [
        c
        for c in repository_consumers(settings, js, service_sessionmakers[REPOSITORY])
        if c.name == ORGANIZATION_EVENTS_CONSUMER
    ]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    yield
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)


async def known_to_the_repository_service(
    sessionmaker: async_sessionmaker[AsyncSession], model: Any, id: str
) -> None:
    """Waits for the organization service's event about `id` to reach the repository
    service's copy (its RPCs answer from it)."""

    async def known() -> bool:
        async with sessionmaker() as session:
            return await session.get(model, uuid.UUID(id)) is not None

    await eventually(known, within=30)


@pytest.fixture(scope="session")
def gateway_settings(
    settings_env: dict[str, str],
    organization_server: RunningServer,
    repository_server: RunningServer,
    reward_server: RunningServer,
    fake_github_server: FakeGitHub,
) -> GatewaySettings:
    return GatewaySettings.model_validate(
        _env(settings_env)
        | {
            "organization_grpc_target": f"127.0.0.1:{organization_server.port}",
            "repository_grpc_target": f"127.0.0.1:{repository_server.port}",
            "reward_grpc_target": f"127.0.0.1:{reward_server.port}",
            "github_webhook_secret": WEBHOOK_SECRET,
            "github_client_id": CLIENT_ID,
            "github_client_secret": CLIENT_SECRET,
            "github_authorize_url": f"{fake_github_server.url}/login/oauth/authorize",
            "github_token_url": f"{fake_github_server.url}/login/oauth/access_token",
            "session_secret": secrets.token_urlsafe(32),
            "public_url": "http://testserver.local",
            "cors_origins": ["http://app.example"],
            "membership_cache_seconds": "1",
            "stream_ping_seconds": "1",
            "log_json": "false",
            "metrics_port": str(METRICS_PORT),
            # Many sign-ins and writes from 127.0.0.1: the limits have their own tests.
            "rate_limit_sign_in_per_minute": "0",
            "rate_limit_write_per_minute": "0",
            "rate_limit_webhook_failures_per_minute": "0",
        }
    )


@pytest.fixture(scope="session")
async def gateway(gateway_settings: GatewaySettings, relay: None) -> AsyncIterator[RunningGateway]:
    async with running_gateway(gateway_settings) as running:
        yield running
    # The bucket of revoked sessions is no stream of the run's prefix: delete it here.
    with contextlib.suppress(Exception):
        await _delete_bucket(gateway_settings)


async def _delete_bucket(settings: GatewaySettings) -> None:
    import nats
    from polar_gateway.sessions import buckets

    nc = await nats.connect(settings.nats_url)
    try:
        for bucket in buckets(settings):
            with contextlib.suppress(Exception):
                await nc.jetstream().delete_key_value(bucket)
    finally:
        await nc.close()


@pytest.fixture
def start_gateway(gateway_settings: GatewaySettings) -> StartGateway:
    """Another gateway with some settings changed (e.g. pointed at a dead NATS)."""

    def start(*, wait_for_nats: bool = True, **overrides: Any) -> Any:
        # Validated like the environment would be (SecretStr fields, the validators).
        settings = GatewaySettings.model_validate(gateway_settings.model_dump() | overrides)
        return running_gateway(settings, wait_for_nats=wait_for_nats)

    return start


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as http:
        yield http


@pytest.fixture(scope="session")
async def repo_stub(
    repository_server: RunningServer, gateway_settings: GatewaySettings
) -> AsyncIterator[RepositoryServiceAsyncStub]:
    target = f"127.0.0.1:{repository_server.port}"
    async with operator_channel(target, gateway_settings) as channel:
        yield RepositoryServiceStub(channel)


# --- GitHub, as the fake knows it ----------------------------------------------------------------


@pytest.fixture(scope="session")
def world() -> GitHubWorld:
    return GitHubWorld()


@pytest.fixture
def github(fake_github: FakeGitHub, world: GitHubWorld) -> FakeGitHub:
    world.teach(fake_github)  # fake_github forgets overrides after each test
    return fake_github


# --- people and their things -------------------------------------------------------------------


@pytest.fixture
def sign_in(
    gateway: RunningGateway,
    github: FakeGitHub,
    world: GitHubWorld,
) -> SignIn:
    async def sign() -> Member:
        user = world.new_user()
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            response = await oauth_sign_in(http, user)
            assert response.status_code == 303, response.text
            token = http.cookies[SESSION_COOKIE]
            me = await http.get("/api/v2/users/me")
            assert me.status_code == 200, me.text
        return Member(me.json()["id"], token, user)

    return sign


@pytest.fixture
def install(
    client: httpx.AsyncClient,
    world: GitHubWorld,
    github: FakeGitHub,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Install:
    """install(member): a new GitHub installation the member installs through the API."""

    async def make(member: Member) -> Org:
        installation = world.new_installation(member.github)
        response = await client.post(
            "/api/v2/integrations/github/installations",
            json={"platform": "github", "external_id": installation["id"]},
            headers=member.headers,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        # Tests then call the repository service about it, which answers from its copy.
        await known_to_the_repository_service(sessionmaker, KnownOrganization, body["id"])
        return Org(body["id"], body["name"], installation["id"])

    return make


@pytest.fixture
def make_repos(
    repo_stub: RepositoryServiceAsyncStub, sessionmaker: async_sessionmaker[AsyncSession]
) -> MakeRepos:
    async def make(org: Org, count: int = 1) -> list[Repo]:
        # An operator's call names the organization: the repository service must know it.
        await known_to_the_repository_service(sessionmaker, KnownOrganization, org.id)
        inputs = []
        for _ in range(count):
            n = next_id()
            inputs.append(
                repo_pb.RepositoryInput(
                    organization_id=org.id,
                    external_id=n,
                    name=f"repo-{n}",
                    description="a repository",
                    stars=5,
                    topics=["python"],
                    main_branch="main",
                )
            )
        response = await repo_stub.BatchUpsertRepositories(
            repo_pb.BatchUpsertRepositoriesRequest(repositories=inputs)
        )
        return [Repo(r.id, r.name, r.organization_id) for r in response.repositories]

    return make


@pytest.fixture
def seed(sessionmaker: async_sessionmaker[AsyncSession]) -> Seed:
    return Seed(sessionmaker)
