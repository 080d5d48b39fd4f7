"""The whole path of a new maintainer, over HTTP, through every real part.

Sign in with GitHub -> install the App -> GitHub's webhooks for the installation, its
repositories, an issue and a pull request arrive at the gateway -> the services' consumers
store them -> list them through the API -> put a reward on the issue -> see it all on the
live stream.

This runs a cluster of its own (database, NATS prefix, both services with their consumers,
the outbox relay and a gateway): the session's other tests share durable consumer names,
which must not be drained by this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from gateway_support import (
    CLIENT_ID,
    CLIENT_SECRET,
    SESSION_COOKIE,
    WEBHOOK_SECRET,
    GitHubWorld,
    next_id,
    oauth_sign_in,
    sign,
)
from polar_db.engine import create_engine, create_sessionmaker
from polar_db.models import ORGANIZATION, REPOSITORY, REWARD
from polar_dev.fake_github import FakeGitHub
from polar_dev.infra import Infra
from polar_dev.pytest_plugin import delete_streams, temporary_database
from polar_gateway.settings import GatewaySettings
from polar_gateway.testing import RunningGateway, running_gateway
from polar_kit.grpc import RunningServer, Worker, start_server
from polar_kit.grpc.auth import GATEWAY, caller_key
from polar_kit.nats import connect, ensure_streams
from polar_kit.outbox import OutboxRelay
from polar_organization import app as organization_app
from polar_organization.settings import OrganizationSettings
from polar_repository import app as repository_app
from polar_repository.settings import RepositorySettings
from polar_reward import app as reward_app
from polar_reward.directory import GrpcDirectory
from polar_reward.settings import RewardSettings
from sqlalchemy.ext.asyncio import AsyncSession


class NoSync:
    async def start(self, session: AsyncSession, repository_id: uuid.UUID) -> bool:
        return False


INTERNAL_SECRET = secrets.token_hex(32)


@dataclass
class Cluster:
    gateway: RunningGateway
    settings: GatewaySettings


@pytest.fixture(scope="module")
async def cluster(polar_infra: Infra, fake_github_server: FakeGitHub) -> AsyncIterator[Cluster]:
    prefix = f"t{secrets.token_hex(5)}."
    async with temporary_database(polar_infra.database_url) as database_url:
        env = {
            "database_url": database_url,
            "nats_url": polar_infra.nats_url,
            "nats_prefix": prefix,
            "github_api_url": fake_github_server.url,
            "consumer_retry_base_seconds": "0.2",
            "outbox_poll_seconds": "0.2",
            "log_json": "false",
            # Real internal secret and token keys; development mode only because the test's
            # webhook secret is in the repository (the gateway would refuse it otherwise).
            "internal_secret": INTERNAL_SECRET,
            "token_encryption_keys": Fernet.generate_key().decode(),
            "dev_mode": "true",
        }
        org_settings = OrganizationSettings.model_validate(env)
        repo_settings = RepositorySettings.model_validate(env)
        reward_settings = RewardSettings.model_validate(env)
        # Each service as deployed: its own role, its own schema (decision 0021).
        engines = {
            o: create_engine(database_url, owner=o) for o in (ORGANIZATION, REPOSITORY, REWARD)
        }
        makers = {o: create_sessionmaker(e) for o, e in engines.items()}
        nc = await connect(org_settings, name="e2e-services")
        js = nc.jetstream()
        await ensure_streams(js, org_settings)
        servers: list[RunningServer] = []
        stop = asyncio.Event()
        workers: list[Worker] = [
            *organization_app.consumers(org_settings, js, makers[ORGANIZATION]),
            *repository_app.consumers(repo_settings, js, makers[REPOSITORY]),
            *reward_app.consumers(reward_settings, js, makers[REWARD]),
            OutboxRelay(makers[ORGANIZATION], js, org_settings),
            OutboxRelay(makers[REPOSITORY], js, repo_settings),
            OutboxRelay(makers[REWARD], js, reward_settings),
        ]
        tasks = [asyncio.create_task(w.run(stop)) for w in workers]
        try:
            for spec, settings, owner in (
                (organization_app.service_spec(org_settings), org_settings, ORGANIZATION),
                (repository_app.service_spec(repo_settings, NoSync()), repo_settings, REPOSITORY),
            ):
                servers.append(
                    await start_server(
                        port=0,
                        host="127.0.0.1",
                        services=[spec],
                        sessionmaker=makers[owner],
                        settings=settings,
                    )
                )
            # The reward service asks the other two, with its own identity.
            reward_settings = reward_settings.model_copy(
                update={
                    "organization_grpc_target": f"127.0.0.1:{servers[0].port}",
                    "repository_grpc_target": f"127.0.0.1:{servers[1].port}",
                }
            )
            directory = GrpcDirectory(reward_settings)
            servers.append(
                await start_server(
                    port=0,
                    host="127.0.0.1",
                    services=[reward_app.service_spec(directory)],
                    sessionmaker=makers[REWARD],
                    settings=reward_settings,
                )
            )
            # The gateway holds only its own key, as on Kubernetes (Secret polar-internal).
            gateway_env = {k: v for k, v in env.items() if k != "internal_secret"}
            gateway_settings = GatewaySettings.model_validate(
                gateway_env
                | {
                    "internal_caller_key": caller_key(INTERNAL_SECRET, GATEWAY),
                    "organization_grpc_target": f"127.0.0.1:{servers[0].port}",
                    "repository_grpc_target": f"127.0.0.1:{servers[1].port}",
                    "reward_grpc_target": f"127.0.0.1:{servers[2].port}",
                    "github_webhook_secret": WEBHOOK_SECRET,
                    "github_client_id": CLIENT_ID,
                    "github_client_secret": CLIENT_SECRET,
                    "github_authorize_url": f"{fake_github_server.url}/login/oauth/authorize",
                    "github_token_url": f"{fake_github_server.url}/login/oauth/access_token",
                    "session_secret": secrets.token_urlsafe(32),
                    "stream_ping_seconds": "1",
                }
            )
            async with running_gateway(gateway_settings) as gateway:
                yield Cluster(gateway, gateway_settings)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)
            for server in servers:
                await server.stop(None)
            from polar_gateway.sessions import buckets

            for bucket in buckets(gateway_settings):
                with contextlib.suppress(Exception):
                    await js.delete_key_value(bucket)
            await nc.close()
            for engine in engines.values():
                await engine.dispose()
            await delete_streams(polar_infra.nats_url, prefix)


class Stream:
    """Collects the user's live stream in the background."""

    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.events: list[dict[str, Any]] = []
        self.ready = asyncio.Event()
        self._task = asyncio.create_task(self._read(http, headers))

    async def _read(self, http: httpx.AsyncClient, headers: dict[str, str]) -> None:
        async with http.stream("GET", "/api/v2/stream", headers=headers) as response:
            assert response.status_code == 200
            frame: dict[str, Any] = {}
            async for line in response.aiter_lines():
                if line.startswith(": ready"):
                    self.ready.set()
                elif line.startswith("event: "):
                    frame["event"] = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    frame["data"] = json.loads(line.removeprefix("data: "))
                elif line == "" and frame:
                    self.events.append(frame)
                    frame = {}

    def kinds(self) -> set[str]:
        return {e["event"].rsplit(".", 1)[1] for e in self.events}

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def eventually(http: httpx.AsyncClient, path: str, headers: dict[str, str]) -> Any:
    for _ in range(300):
        response = await http.get(path, headers=headers)
        # 404 until the consumers have stored the repository.
        assert response.status_code in (200, 404), response.text
        if response.status_code == 200 and response.json()["items"]:
            return response.json()["items"]
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} stayed empty")


def load(fixtures: Path, name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((fixtures / "webhooks" / name).read_text())
    return payload


async def deliver(http: httpx.AsyncClient, event: str, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    response = await http.post(
        "/api/v2/integrations/github/webhook",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(body),
        },
    )
    assert response.status_code == 202, response.text


async def test_a_new_maintainer_from_sign_in_to_live_events(
    cluster: Cluster, github: FakeGitHub, world: GitHubWorld, github_fixtures: Path
) -> None:
    user = world.new_user()
    async with httpx.AsyncClient(base_url=cluster.gateway.url, timeout=15) as http:
        # 1. Sign in.
        assert (await oauth_sign_in(http, user)).status_code == 303
        headers = {"Authorization": f"Bearer {http.cookies[SESSION_COOKIE]}"}
        http.cookies.clear()
        stream = Stream(http, headers)
        await asyncio.wait_for(stream.ready.wait(), 10)
        try:
            # 2. Install the App (GitHub shows the user the installation).
            installation = world.new_installation(user)
            account = installation["account"]
            installed = await http.post(
                "/api/v2/integrations/github/installations",
                json={"platform": "github", "external_id": installation["id"]},
                headers=headers,
            )
            assert installed.status_code == 200, installed.text
            org = installed.json()

            # 3. GitHub's webhooks: the installation with a repository, an issue, a PR.
            repo_id, repo_name = next_id(), f"e2e-repo-{next_id()}"
            created = load(github_fixtures, "installation/created.payload.json")
            created["installation"] |= {"id": installation["id"], "account": account}
            created["repositories"] = [
                {
                    "id": repo_id,
                    "node_id": "R_e2e",
                    "name": repo_name,
                    "full_name": f"{account['login']}/{repo_name}",
                    "private": False,
                }
            ]
            await deliver(http, "installation", created)
            for event, name, key in (
                ("issues", "issues/opened.payload.json", "issue"),
                ("pull_request", "pull_request/opened.payload.json", "pull_request"),
            ):
                payload = load(github_fixtures, name)
                payload["installation"] = {"id": installation["id"]}
                payload["repository"] |= {
                    "id": repo_id,
                    "name": repo_name,
                    "full_name": f"{account['login']}/{repo_name}",
                    "owner": payload["repository"]["owner"]
                    | {"id": account["id"], "login": account["login"]},
                }
                payload[key] |= {"id": next_id(), "number": 1 if key == "issue" else 2}
                await deliver(http, event, payload)

            # 4. List them.
            base = f"github/{account['login']}/{repo_name}"
            [issue] = await eventually(http, f"/api/v2/issues/{base}", headers)
            [pull_request] = await eventually(http, f"/api/v2/pull_requests/{base}", headers)
            assert issue["number"] == 1
            assert pull_request["number"] == 2
            mine = await http.get("/api/v2/user/organizations", headers=headers)
            [listed] = mine.json()["items"]
            assert listed["id"] == org["id"]
            assert [r["name"] for r in listed["repositories"]] == [repo_name]

            # 5. A reward on the issue.
            reward = await http.post(
                "/api/v2/rewards",
                json={"issue_id": issue["id"], "amount": {"currency": "USD", "amount": 1000}},
                headers=headers,
            )
            assert reward.status_code == 201, reward.text
            rewards = await http.get(f"/api/v2/rewards/{base}", headers=headers)
            assert [r["id"] for r in rewards.json()["items"]] == [reward.json()["id"]]

            # 6. All of it on the stream.
            wanted = {
                "member_added",
                "repository_created",
                "issue_created",
                "pull_request_created",
                "reward_created",
            }
            for _ in range(300):
                if wanted <= stream.kinds():
                    break
                await asyncio.sleep(0.1)
            assert wanted <= stream.kinds(), stream.kinds()
            for seen in stream.events:
                text = json.dumps(seen["data"])
                assert org["id"] in text or user.login in text  # nothing of anyone else
        finally:
            await stream.close()
