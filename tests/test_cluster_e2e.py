"""The whole cluster as OS processes, with every recorded GitHub webhook replayed through it.

Started the way `make dev` starts it (`python -m <module>` of every service discovered under
services/), but with 2 replicas of each gRPC service on a fresh database and NATS prefix.
Every recorded delivery (polar_dev/fixtures/github/webhooks) goes through the gateway, signed,
in a realistic order; then all of them again, shuffled, with more duplicates among them. Then:

- the organizations, repositories, issues and pull requests the gateway answers are what the
  payloads say (the expected state is computed from the fixtures below, by the rules the
  services document: newest `updated_at` wins, deletions are tombstones, events about an
  account or repository we do not know are retried then parked);
- nothing was processed twice: JetStream stored each delivery once, each consumer recorded
  each delivery it applied once, the deliveries it could never apply were parked once, and
  the outbox holds one `*_created` event per created row;
- every domain event reached a stream subscriber exactly once in effect: a JetStream ordered
  consumer on POLAR_EVENTS sees each outbox row's id once with its exact bytes, and a core
  NATS subscriber sees every id (a repeat would carry the same bytes);
- SIGTERM stops every process with exit code 0.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import hashlib
import hmac
import importlib
import json
import os
import random
import re
import secrets
import signal
import socket
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, RawStreamMsg
from polar.organization.v1 import organization_service_pb2 as org_pb
from polar.organization.v1.organization_service_pb2_grpc import OrganizationServiceStub
from polar_db.testing import SEARCH_PATH_ALL, all_services_views
from polar_dev.fake_github import FakeGitHub
from polar_dev.infra import Infra
from polar_dev.paths import repo_root
from polar_dev.pytest_plugin import delete_streams, plain_dsn, temporary_database
from polar_dev.services import ServiceSpec, discover_services
from polar_gateway.sessions import TokenSigner, buckets
from polar_gateway.settings import GatewaySettings
from polar_kit.grpc.auth import operator_channel
from polar_kit.nats import EVENTS, PARKED, WEBHOOKS
from polar_kit.settings import ServiceSettings
from polar_kit.testing import eventually

SEED = 20240607
REPLICAS = 2
WEBHOOK_SECRET = "cluster-e2e-webhook-secret"
SESSION_SECRET = "cluster-e2e-session-secret-" + "x" * 32
INTERNAL_SECRET = secrets.token_hex(32)
TOKEN_KEY = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
GRACE_SECONDS = 5

# What each durable consumer subscribes to (see the services' consumers.py).
ORGANIZATION_CONSUMER = "organization-installations"
REPOSITORY_CONSUMER = "repository-webhooks"
# Consumers of domain events: consumer -> the (logical) subject it handles.
EVENT_CONSUMERS = {
    "repository-organization-events": [
        f"polar.organization.v1.{e}"
        for e in (
            "created",
            "updated",
            "suspended",
            "unsuspended",
            "deleted",
        )
    ],
    "repository-sync-on-create": ["polar.repository.v1.repository_created"],
    "reward-repository-events": [
        "polar.repository.v1.issue_deleted",
        "polar.repository.v1.issue_updated",
        "polar.repository.v1.repository_updated",
    ],
}
INSTALLATION_ACTIONS = ("created", "deleted", "suspend", "unsuspend", "new_permissions_accepted")

# Realistic order of the first replay: installations, then what they give access to, then
# the repositories' content, then everything nobody consumes.
EVENT_ORDER = {
    "installation": 0,
    "installation_repositories": 1,
    "repository": 2,
    "issues": 3,
    "pull_request": 4,
}
INSTALLATION_ORDER = {"created": 0, "new_permissions_accepted": 1, "suspend": 2, "unsuspend": 3}


# --- the recorded deliveries and what they should leave behind -----------------------------


@dataclass(frozen=True)
class Hook:
    event: str  # X-GitHub-Event: the folder's name
    path: str  # relative to the webhooks folder
    body: bytes
    payload: dict[str, Any]

    @property
    def action(self) -> str:
        return str(self.payload.get("action") or "")

    @property
    def delivery(self) -> str:
        """A stable X-GitHub-Delivery per fixture file."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"polar-cluster-e2e/{self.path}"))

    def order(self) -> tuple[int, int, str]:
        rank = EVENT_ORDER.get(self.event, len(EVENT_ORDER))
        action = INSTALLATION_ORDER.get(self.action, 9) if self.event == "installation" else 0
        return rank, action, self.path


def load_hooks(webhooks: Path) -> list[Hook]:
    hooks = []
    for file in sorted(webhooks.glob("*/*.json")):
        body = file.read_bytes()
        hooks.append(
            Hook(file.parent.name, str(file.relative_to(webhooks)), body, json.loads(body))
        )
    return sorted(hooks, key=Hook.order)


def _id(obj: Any) -> int | None:
    value = obj.get("id") if isinstance(obj, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _time(value: Any) -> datetime:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class Item:
    """An issue or pull request: the values of its newest payloads (several on a tie)."""

    number: set[int] = field(default_factory=set)
    title: set[str] = field(default_factory=set)
    state: set[str] = field(default_factory=set)
    newest: datetime | None = None
    deleted: bool = False

    def see(self, obj: Mapping[str, Any]) -> None:
        updated = _time(obj.get("updated_at") or obj["created_at"])
        if self.newest is not None and updated < self.newest:
            return
        if self.newest is None or updated > self.newest:
            self.number, self.title, self.state = set(), set(), set()
            self.newest = updated
        self.number.add(int(obj["number"]))
        self.title.add(str(obj.get("title") or ""))
        self.state.add(str(obj.get("state") or ("closed" if obj.get("closed_at") else "open")))


@dataclass
class Expected:
    """The final state the fixtures call for, and what each consumer does with them."""

    accounts: dict[int, dict[str, Any]]  # GitHub account id -> installation object
    repositories: dict[int, dict[str, Any]]  # external id -> {"name", "is_private"}
    removed_repositories: set[int]
    issues: dict[int, Item]
    pull_requests: dict[int, Item]
    applied: dict[str, set[str]]  # consumer -> deliveries it applies (processed_messages)
    parked: dict[str, set[str]]  # consumer -> deliveries it can never apply

    @classmethod
    def of(cls, hooks: Sequence[Hook]) -> Expected:
        created = [h for h in hooks if h.event == "installation" and h.action == "created"]
        accounts = {
            int(h.payload["installation"]["account"]["id"]): h.payload["installation"]
            for h in created
        }
        installations = {int(h.payload["installation"]["id"]) for h in created}
        applied: dict[str, set[str]] = defaultdict(set)
        parked: dict[str, set[str]] = defaultdict(set)

        def outcome(consumer: str, hook: Hook, ok: bool) -> bool:
            (applied if ok else parked)[consumer].add(hook.delivery)
            return ok

        # The repository service makes an organization of any account an installation
        # webhook names (under the id it derives from it, without waiting for the
        # organization service: decision 0021); repository webhooks need one of those.
        installed = [
            h
            for h in hooks
            if (h.event, h.action) == ("installation", "created")
            or h.event == "installation_repositories"
        ]
        installed_accounts = {_id(h.payload["installation"].get("account")) for h in installed}
        installed_ids = {_id(h.payload["installation"]) for h in installed}

        def account_named(account: Any) -> bool:
            return _id(account) is not None

        def org_known(account: Any, installation: Any) -> bool:
            return _id(account) in installed_accounts or _id(installation) in installed_ids

        # organization-installations: `created` makes an installation known; anything else
        # about an installation never created here waits for it, then is parked.
        for h in hooks:
            if h.event == "installation" and h.action in INSTALLATION_ACTIONS:
                known = h.action == "created" or _id(h.payload["installation"]) in installations
                outcome(ORGANIZATION_CONSUMER, h, known)

        # repository-webhooks: installations and repositories first (they make repositories
        # known), then issues and pull requests of known repositories.
        listed: dict[int, dict[str, Any]] = {}  # an installation's listing: name, private
        full: dict[int, tuple[datetime, dict[str, Any]]] = {}  # newest full repository object
        removed: set[int] = set()
        for h in hooks:
            p = h.payload
            installation = p.get("installation") or {}
            if h.event == "installation" and h.action == "created":
                outcome(REPOSITORY_CONSUMER, h, True)
                listed |= {r["id"]: r for r in p.get("repositories") or []}
            elif h.event == "installation_repositories":
                if outcome(REPOSITORY_CONSUMER, h, account_named(installation.get("account"))):
                    listed |= {r["id"]: r for r in p["repositories_added"]}
                    removed |= {r["id"] for r in p["repositories_removed"]}
            elif h.event == "repository":
                repo = p["repository"]
                if outcome(REPOSITORY_CONSUMER, h, org_known(repo.get("owner"), installation)):
                    assert h.action != "deleted", "not modelled: repository.deleted"
                    updated = _time(repo["updated_at"])
                    if repo["id"] not in full or full[repo["id"]][0] <= updated:
                        full[repo["id"]] = (updated, repo)
        assert not removed & set(listed), "not modelled: a repository added and removed"
        repositories = {
            rid: {"name": r["name"], "is_private": bool(r.get("private"))}
            for rid, r in (listed | {rid: repo for rid, (_, repo) in full.items()}).items()
        }

        issues: dict[int, Item] = defaultdict(Item)
        pull_requests: dict[int, Item] = defaultdict(Item)
        for h in hooks:
            if h.event not in ("issues", "pull_request"):
                continue
            rid = _id(h.payload.get("repository"))
            if not outcome(REPOSITORY_CONSUMER, h, rid in repositories):
                continue
            if rid in removed:
                continue
            if h.event == "pull_request":
                pull_requests[h.payload["pull_request"]["id"]].see(h.payload["pull_request"])
                continue
            issue = h.payload["issue"]
            if issue.get("pull_request") is not None:
                continue  # GitHub's issue view of a pull request
            assert h.action != "transferred", "not modelled: a transfer between our repos"
            issues[issue["id"]].see(issue)
            issues[issue["id"]].deleted |= h.action == "deleted"
        return cls(
            accounts,
            repositories,
            removed,
            dict(issues),
            dict(pull_requests),
            dict(applied),
            dict(parked),
        )


# --- processes -------------------------------------------------------------------------------


@dataclass
class Process:
    name: str  # e.g. organization-2
    spec: ServiceSpec
    port: int
    log: Path
    process: asyncio.subprocess.Process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG, as the dev runner does


async def start(
    spec: ServiceSpec, name: str, port: int, env: Mapping[str, str], logs: Path
) -> Process:
    log = logs / f"{name}.log"
    # Logs go to a file: an unread pipe fills up and then blocks the process.
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            spec.module,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env={**env, spec.port_env: str(port)},
            cwd=repo_root(),
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    return Process(name, spec, port, log, process)


async def grpc_serving(process: Process, service: str, within: float) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{process.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)

        async def serving() -> bool:
            assert process.process.returncode is None, f"{process.name} exited"
            try:
                reply = await health.Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=2
                )
            except grpc.aio.AioRpcError:
                return False
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

        await eventually(serving, within=within)


async def http_ready(process: Process, within: float) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{process.port}") as http:

        async def ready() -> bool:
            assert process.process.returncode is None, f"{process.name} exited"
            try:
                return (await http.get("/readyz", timeout=2)).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(ready, within=within)


def tails(processes: Iterable[Process], lines: int = 15, width: int = 400) -> str:
    """The last lines of every process's log, cut short (for a failure's report)."""
    parts = []
    for p in processes:
        text = p.log.read_text(errors="replace").splitlines() if p.log.exists() else []
        shown = "\n".join(line[:width] for line in text[-lines:])
        parts.append(f"--- {p.name} (exit {p.process.returncode}) {p.log} ---\n{shown}")
    return "\n".join(parts)


@dataclass
class Cluster:
    prefix: str
    database_url: str
    gateway: Process
    services: dict[str, list[Process]]  # every gRPC service discovered -> its replicas

    @property
    def processes(self) -> list[Process]:
        return [self.gateway, *(p for ps in self.services.values() for p in ps)]


def health_name(spec: ServiceSpec) -> str:
    """The gRPC service a service's health check names (its app module's SERVICE_NAME, as
    every service and the `make new-service` template declare it)."""
    return str(importlib.import_module(f"{spec.module}.app").SERVICE_NAME)


def free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


@pytest.fixture
async def cluster(
    polar_infra: Infra, fake_github_server: FakeGitHub, tmp_path: Path
) -> AsyncIterator[Cluster]:
    prefix = f"t{secrets.token_hex(5)}."
    # Every discovered service runs, a generated one (`make new-service`) included: the
    # gateway once, every gRPC service in REPLICAS replicas.
    specs = {s.name: s for s in discover_services(repo_root() / "services")}
    assert {"gateway", "organization", "repository"} <= set(specs), specs
    grpc_specs = [s for s in specs.values() if s.name != "gateway"]
    assert all(s.protocol == "grpc" for s in grpc_specs), grpc_specs
    async with temporary_database(polar_infra.database_url) as database_url:
        base = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "POLAR_DEV_MODE": "true",  # a test: its secrets are in the repository
            "POLAR_DATABASE_URL": database_url,
            "POLAR_NATS_URL": polar_infra.nats_url,
            "POLAR_NATS_PREFIX": prefix,
            "POLAR_GITHUB_API_URL": fake_github_server.url,
            "POLAR_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "POLAR_SESSION_SECRET": SESSION_SECRET,
            "POLAR_INTERNAL_SECRET": INTERNAL_SECRET,
            "POLAR_TOKEN_ENCRYPTION_KEYS": TOKEN_KEY,
            "POLAR_CONSUMER_RETRY_BASE_SECONDS": "0.2",
            "POLAR_CONSUMER_RETRY_MAX_SECONDS": "1",
            "POLAR_CONSUMER_MAX_ATTEMPTS": "20",
            # Deliveries whose organization or repository never comes: parked after 10 s.
            "POLAR_CONSUMER_WAIT_MAX_SECONDS": "10",
            "POLAR_OUTBOX_POLL_SECONDS": "0.2",
            "POLAR_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
            "POLAR_LOG_JSON": "true",
            "POLAR_METRICS_PORT": "0",
        }
        # Every replica's port is chosen before any starts, so each service knows where all
        # the others listen (one multi-address target per service, grpc's `ipv4:` resolver:
        # if one replica goes away, calls go to the other) and none needs to start first.
        ports = iter(free_ports(REPLICAS * len(grpc_specs) + 1))
        addresses = {s.name: [next(ports) for _ in range(REPLICAS)] for s in grpc_specs}
        targets = {
            f"POLAR_{name.upper()}_GRPC_TARGET": "ipv4:"
            + ",".join(f"127.0.0.1:{port}" for port in replica_ports)
            for name, replica_ports in addresses.items()
        }
        services: dict[str, list[Process]] = {}
        running: list[Process] = []
        try:
            for spec in grpc_specs:
                services[spec.name] = []
                for replica, port in enumerate(addresses[spec.name], start=1):
                    name = f"{spec.name}-{replica}"
                    p = await start(spec, name, port, base | targets, tmp_path)
                    services[spec.name].append(p)
                    running.append(p)
            await asyncio.gather(
                *(
                    grpc_serving(p, health_name(specs[name]), within=60)
                    for name, ps in services.items()
                    for p in ps
                )
            )
            gateway = await start(
                specs["gateway"],
                "gateway",
                next(ports),
                base | targets | {"POLAR_GATEWAY_HTTP_HOST": "127.0.0.1"},
                tmp_path,
            )
            running.append(gateway)
            await http_ready(gateway, within=60)
            yield Cluster(prefix, database_url, gateway, services)
        except BaseException:
            print(tails(running))
            raise
        finally:
            for p in running:
                if p.process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(p.process.pid, signal.SIGKILL)
                    await p.process.wait()
            settings = GatewaySettings.model_validate({"nats_prefix": prefix})
            with contextlib.suppress(Exception):
                import nats

                nc = await nats.connect(polar_infra.nats_url)
                for bucket in buckets(settings):
                    with contextlib.suppress(Exception):
                        await nc.jetstream().delete_key_value(bucket)
                await nc.close()
            await delete_streams(polar_infra.nats_url, prefix)


# --- the test --------------------------------------------------------------------------------


def sign(body: bytes) -> str:
    return "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()


async def deliver(http: httpx.AsyncClient, hook: Hook) -> httpx.Response:
    return await http.post(
        "/api/v2/integrations/github/webhook",
        content=hook.body,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": hook.event,
            "X-GitHub-Delivery": hook.delivery,
            "X-Hub-Signature-256": sign(hook.body),
        },
    )


def check_answer(hook: Hook, response: httpx.Response, *, duplicate: bool) -> None:
    if hook.event == "ping":
        assert response.status_code == 200, (hook.path, response.text)
        assert response.json()["status"] == "pong"
        return
    assert response.status_code == 202, (hook.path, response.text)
    answer = response.json()
    assert answer["status"] == "accepted", (hook.path, answer)
    assert answer["delivery"] == hook.delivery
    # The second time around JetStream recognises the id and stores nothing.
    assert bool(answer.get("duplicate")) is duplicate, (hook.path, answer)


class Received:
    """Every domain event seen by a JetStream ordered consumer and a core subscriber."""

    def __init__(self) -> None:
        self.jetstream: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
        self.core: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
        self.sequence: dict[str, int] = {}  # event id -> its stream sequence (JetStream)
        self.bad_headers: list[dict[str, str]] = []

    def into(self, where: dict[str, list[tuple[str, bytes]]]) -> Any:
        async def cb(msg: Msg) -> None:
            headers = dict(msg.headers or {})
            ce_id = headers.get("ce-id", "")
            if not ce_id or headers.get("Nats-Msg-Id") != ce_id:
                self.bad_headers.append(headers)
            where[ce_id].append((msg.subject, msg.data))
            if where is self.jetstream:
                self.sequence[ce_id] = msg.metadata.sequence.stream

        return cb


async def rows(database_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    """`query` over every service's tables at once (each service's outbox and processed
    marks are in its own schema: decision 0021)."""
    connection = await asyncpg.connect(
        plain_dsn(database_url), server_settings={"search_path": SEARCH_PATH_ALL}
    )
    try:
        await connection.execute(all_services_views())
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


async def parked_messages(js: JetStreamContext, prefix: str) -> list[RawStreamMsg]:
    """Everything on the PARKED stream of `prefix` (read without acking)."""
    stream = PARKED.stream_name(prefix)
    info = await js.stream_info(stream)
    if not info.state.messages:
        return []
    return [
        await js.get_msg(stream, seq)
        for seq in range(info.state.first_seq, info.state.last_seq + 1)
    ]


async def test_every_recorded_webhook_through_a_replicated_cluster(
    cluster: Cluster, nc: NATS, js: JetStreamContext, github_fixtures: Path
) -> None:
    hooks = load_hooks(github_fixtures / "webhooks")
    assert {h.event for h in hooks} == {
        p.name for p in (github_fixtures / "webhooks").iterdir() if p.is_dir()
    }
    assert len({h.delivery for h in hooks}) == len(hooks)
    expected = Expected.of(hooks)
    prefix, db = cluster.prefix, cluster.database_url
    try:
        await _replay_and_check(cluster, nc, js, hooks, expected, prefix, db)
    except BaseException:
        print(tails(cluster.processes))
        raise


async def _replay_and_check(
    cluster: Cluster,
    nc: NATS,
    js: JetStreamContext,
    hooks: list[Hook],
    expected: Expected,
    prefix: str,
    db: str,
) -> None:
    received = Received()
    subs = [
        await js.subscribe(
            f"{prefix}polar.>",
            stream=EVENTS.stream_name(prefix),
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
            cb=received.into(received.jetstream),
        ),
        await nc.subscribe(f"{prefix}polar.>", cb=received.into(received.core)),
    ]

    # The maintainer signed in before installing the App: `installation.created` (its sender
    # is the account) makes them a member. Called on the second replica of each service.
    [account_id] = expected.accounts
    account = expected.accounts[account_id]["account"]
    target = f"127.0.0.1:{cluster.services['organization'][1].port}"
    operator = ServiceSettings(internal_secret=INTERNAL_SECRET)
    async with operator_channel(target, operator) as channel:
        signed_in = await OrganizationServiceStub(channel).UpsertUserFromGitHub(
            org_pb.UpsertUserFromGitHubRequest(
                github_user_id=account_id,
                login=account["login"],
                email=f"{account['login'].lower()}@example.com",
                email_verified=True,
                access_token="gho_cluster_e2e",
            )
        )
    user_id = signed_in.user.id
    token, _ = TokenSigner(
        GatewaySettings.model_validate({"session_secret": SESSION_SECRET})
    ).issue_session(user_id, ttl=3600)
    auth = {"Authorization": f"Bearer {token}"}

    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{cluster.gateway.port}", timeout=30
    ) as http:
        # 1. Every delivery once, in order, one after the other (as GitHub sends them).
        for hook in hooks:
            check_answer(hook, await deliver(http, hook), duplicate=False)

        # 2. All of them again, with more repeats, shuffled, several at a time.
        rng = random.Random(SEED)
        again = [*hooks, *rng.sample(hooks, len(hooks) // 2)]
        rng.shuffle(again)
        limit = asyncio.Semaphore(8)

        async def redeliver(hook: Hook) -> None:
            async with limit:
                check_answer(hook, await deliver(http, hook), duplicate=True)

        await asyncio.gather(*(redeliver(h) for h in again))

        # JetStream stored each delivery once (ping is answered, not published).
        stored = await js.stream_info(WEBHOOKS.stream_name(prefix))
        assert stored.state.messages == sum(h.event != "ping" for h in hooks)

        # 3. Quiescence: every consumer applied what it can, parked what it never can.
        want_applied = {(c, d) for c, ds in expected.applied.items() for d in ds}
        want_parked = {(c, d) for c, ds in expected.parked.items() for d in ds}

        async def applied() -> set[tuple[str, str]]:
            found = await rows(db, "SELECT consumer, message_id FROM processed_messages")
            return {(r["consumer"], r["message_id"]) for r in found}

        async def parked() -> list[tuple[str, str]]:
            return [
                (
                    (m.headers or {})["Polar-Parked-Consumer"],
                    (m.headers or {})["Polar-Message-Id"],
                )
                for m in await parked_messages(js, prefix)
            ]

        async def settled() -> bool:
            return want_applied <= await applied() and len(await parked()) >= len(want_parked)

        await eventually(settled, within=120)
        assert Counter(await parked()) == Counter(want_parked)  # each parked once

        # The consumers of domain events handle every event of theirs, once.
        async def event_consumers() -> set[tuple[str, str]]:
            events = await rows(db, "SELECT id::text AS id, subject FROM outbox_events")
            return {
                (c, r["id"])
                for c, subjects in (EVENT_CONSUMERS | await other_consumers()).items()
                for r in events
                if r["subject"] in subjects
            }

        # A consumer this test does not list (of a service `make new-service` added, say):
        # every event of each subject it handled at all.
        async def other_consumers() -> dict[str, list[str]]:
            handled = await rows(
                db,
                "SELECT DISTINCT m.consumer, e.subject FROM processed_messages m"
                " JOIN outbox_events e ON e.id::text = m.message_id",
            )
            found: dict[str, list[str]] = defaultdict(list)
            for r in handled:
                if r["consumer"] not in EVENT_CONSUMERS:
                    found[r["consumer"]].append(r["subject"])
            return found

        want_applied |= await event_consumers()
        await eventually(lambda: _true_when(want_applied, applied), within=30)
        names = {h.delivery: h.path for h in hooks}
        assert {(c, names.get(d, d)) for c, d in await applied()} == {
            (c, names.get(d, d)) for c, d in want_applied
        }

        # 4. What the gateway answers matches the payloads.
        await _check_state(http, auth, expected, db, account)

    # 5. Every outbox row was published, and reached the subscribers once in effect.
    async def outbox() -> list[asyncpg.Record]:
        return await rows(db, "SELECT id, subject, payload, published_at FROM outbox_events")

    async def all_received() -> bool:
        events = await outbox()
        ids = {str(e["id"]) for e in events}
        return all(e["published_at"] for e in events) and ids <= set(received.jetstream)

    await eventually(all_received, within=30)
    events = await outbox()
    by_id = {str(e["id"]): (prefix + e["subject"], bytes(e["payload"])) for e in events}
    await eventually(lambda: _true(set(received.core) >= set(by_id)), within=10)
    for sub in subs:
        await sub.unsubscribe()
    assert not received.bad_headers
    assert set(received.jetstream) == set(by_id)
    assert {i: len(v) for i, v in received.jetstream.items() if len(v) != 1} == {}
    assert {i: v[0] for i, v in received.jetstream.items()} == by_id
    assert set(received.core) == set(by_id)
    assert {i: set(v) for i, v in received.core.items()} == {i: {v} for i, v in by_id.items()}
    _check_outbox(Counter(e["subject"] for e in events), expected, hooks)

    # The user's live stream through the gateway, replayed from the start: every event of
    # this run is about them or their organization, so they see each one, once — except
    # what precedes their membership on the stream (a replay never reaches before the user
    # joined): the organization's `created`, and whatever the repository service, which
    # waits for no one (decision 0021), happened to publish before the `member_added`.
    [joined] = [
        received.sequence[i]
        for i, (subject, _) in by_id.items()
        if subject == prefix + "polar.organization.v1.member_added"
    ]
    about_the_user = prefix + "polar.organization.v1.user_"  # not an organization's: always
    visible = {
        i: subject
        for i, (subject, _) in by_id.items()
        if received.sequence[i] >= joined or subject.startswith(about_the_user)
    }
    assert prefix + "polar.organization.v1.created" not in visible.values()
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{cluster.gateway.port}", timeout=30
    ) as http:
        try:
            streamed = await read_stream(http, auth | {"Last-Event-ID": "0"}, len(visible), 30)
        except AssertionError as err:
            want = sorted(s.removeprefix(prefix) for s in visible.values())
            raise AssertionError(f"{err}; expected {want}") from None
    got = {e["data"]["id"]: (e["event"], int(e["id"])) for e in streamed}
    assert set(got) == set(visible), (
        {i: got[i] for i in set(got) - set(visible)},
        {i: (visible[i], received.sequence[i]) for i in set(visible) - set(got)},
        joined,
    )
    assert Counter(e["data"]["id"] for e in streamed) == Counter(set(visible))
    assert {e["data"]["id"]: prefix + e["event"] for e in streamed} == visible
    sequences = [int(e["id"]) for e in streamed]
    assert sequences == sorted(set(sequences))

    # 6. SIGTERM: every process drains and exits 0 within its grace period.
    for p in cluster.processes:
        p.process.send_signal(signal.SIGTERM)
    codes = await asyncio.gather(
        *(asyncio.wait_for(p.process.wait(), GRACE_SECONDS + 20) for p in cluster.processes)
    )
    assert dict(zip((p.name for p in cluster.processes), codes, strict=True)) == {
        p.name: 0 for p in cluster.processes
    }
    # Nothing went wrong but the deliveries expected to be parked, and every gRPC service
    # stopped through its own shutdown path.
    want_parked = {(c, d) for c, ds in expected.parked.items() for d in ds}
    for p in cluster.processes:
        problems = [
            line for line in p.log.read_text().splitlines() if not _expected_line(line, want_parked)
        ]
        assert problems == [], (p.name, problems[:5])
        if p.spec.protocol == "grpc":
            assert '"event": "stopped"' in p.log.read_text(), p.name


GRPC_CORE_LINE = re.compile(r"^[DIWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ [\w.]+:\d+\] ")


def _expected_line(line: str, parked: set[tuple[str, str]]) -> bool:
    """A JSON log line below error, or the error of a delivery we expect to be parked.

    gRPC's C core writes its own glog-style lines to stderr (`E1126 08:42:36.418 ... epoll_ctl
    failed: Bad file descriptor` while a server shuts down): not ours, and known benign.
    """
    if GRPC_CORE_LINE.match(line):
        return True
    try:
        record = json.loads(line)
    except ValueError:
        return False
    if record.get("level") not in ("error", "critical", "exception"):
        return True
    return (
        record.get("event") == "message failed, attempts exhausted"
        and (
            record.get("consumer"),
            record.get("message_id"),
        )
        in parked
    )


async def read_stream(
    http: httpx.AsyncClient, headers: dict[str, str], count: int, within: float
) -> list[dict[str, Any]]:
    """The first `count` events of GET /api/v2/stream (SSE frames: id, event, data)."""
    events: list[dict[str, Any]] = []

    async def read() -> None:
        async with http.stream("GET", "/api/v2/stream", headers=headers) as response:
            assert response.status_code == 200, await response.aread()
            frame: dict[str, Any] = {}
            async for line in response.aiter_lines():
                if line.startswith(("id:", "event:", "data:")):
                    key, _, value = line.partition(":")
                    frame[key] = json.loads(value) if key == "data" else value.strip()
                elif line == "" and "data" in frame:
                    events.append(frame)
                    frame = {}
                    if len(events) >= count:
                        return

    try:
        await asyncio.wait_for(read(), within)
    except TimeoutError:
        got = sorted(e.get("event", "?") for e in events)
        raise AssertionError(f"{len(events)} of {count} events streamed: {got}") from None
    return events


async def _true(value: bool) -> bool:
    return value


async def _true_when(
    want: set[tuple[str, str]], found: Callable[[], Awaitable[set[tuple[str, str]]]]
) -> bool:
    return want <= await found()


async def _check_state(
    http: httpx.AsyncClient,
    auth: dict[str, str],
    expected: Expected,
    db: str,
    account: Mapping[str, Any],
) -> None:
    mine = await http.get("/api/v2/user/organizations", headers=auth)
    assert mine.status_code == 200, mine.text
    [org] = mine.json()["items"]
    installation = expected.accounts[account["id"]]
    assert org["external_id"] == account["id"]
    assert org["name"] == account["login"]
    assert org["platform"] == "github"
    assert org["installation_id"] == installation["id"]
    assert org["is_personal"] is (account["type"] == "User")
    assert org["status"] == "active"
    single = await http.get(f"/api/v2/organizations/{org['id']}", headers=auth)
    assert single.status_code == 200, single.text
    assert {k: v for k, v in single.json().items()} == {
        k: v for k, v in org.items() if k != "repositories"
    }

    live = {
        rid: r
        for rid, r in expected.repositories.items()
        if rid not in expected.removed_repositories
    }
    listed = {r["external_id"]: r for r in org["repositories"]}
    assert set(listed) == set(live)
    for rid, repo in listed.items():
        assert repo["name"] == live[rid]["name"], repo
        assert repo["is_private"] is live[rid]["is_private"], repo
        assert repo["organization_id"] == org["id"]
        got = await http.get(f"/api/v2/repositories/{repo['id']}", headers=auth)
        assert got.status_code == 200, got.text
        assert got.json()["name"] == repo["name"]

    # Issues and pull requests per repository, through every page.
    async def items(kind: str, repo: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
            page = await http.get(
                f"/api/v2/{kind}/github/{org['name']}/{repo}", params=params, headers=auth
            )
            assert page.status_code == 200, page.text
            found += page.json()["items"]
            cursor = page.json()["next_cursor"]
            if not cursor:
                return found

    issues: dict[int, dict[str, Any]] = {}
    pulls: dict[int, dict[str, Any]] = {}
    for repo in listed.values():
        for i in await items("issues", repo["name"]):
            assert i["external_id"] not in issues, "listed twice"
            issues[i["external_id"]] = i
        for i in await items("pull_requests", repo["name"]):
            assert i["external_id"] not in pulls, "listed twice"
            pulls[i["external_id"]] = i

    live_issues = {i: e for i, e in expected.issues.items() if not e.deleted}
    assert set(issues) == set(live_issues)
    assert set(pulls) == set(expected.pull_requests)
    for got_items, want_items in ((issues, live_issues), (pulls, expected.pull_requests)):
        for external_id, item in got_items.items():
            want = want_items[external_id]
            assert [item["number"]] == list(want.number), item
            assert item["title"] in want.title, item
            assert item["state"] in want.state, (item["state"], want.state)

    # Deleted issues stay as tombstones, never listed.
    tombstones = await rows(
        db, "SELECT external_id, number FROM issues WHERE deleted_at IS NOT NULL"
    )
    assert {r["external_id"] for r in tombstones} == {
        i for i, e in expected.issues.items() if e.deleted
    }
    for r in tombstones:
        assert {r["number"]} == expected.issues[r["external_id"]].number

    # One row per external id, and nothing we were not told about.
    for table, want_ids in (
        ("organizations", set(expected.accounts)),
        ("repositories", set(expected.repositories)),
        ("issues", set(expected.issues)),
        ("pull_requests", set(expected.pull_requests)),
    ):
        found = await rows(db, f"SELECT external_id FROM {table}")
        ids = [r["external_id"] for r in found]
        assert Counter(ids) == Counter(want_ids), table


def _check_outbox(subjects: Counter[str], expected: Expected, hooks: Sequence[Hook]) -> None:
    """One creation event per created row; no event the fixtures do not call for; updates
    bounded by the deliveries that could cause them."""
    org, repo = "polar.organization.v1.", "polar.repository.v1."
    live_issues = [i for i, e in expected.issues.items() if not e.deleted]
    exact = {
        org + "user_created": 1,
        org + "created": len(expected.accounts),
        org + "member_added": len(expected.accounts),
        repo + "repository_created": len(expected.repositories),
        repo + "pull_request_created": len(expected.pull_requests),
        repo + "issue_deleted": sum(e.deleted for e in expected.issues.values()),
    }
    applied = set().union(*expected.applied.values())
    bounded = {
        org + "updated": sum(h.event == "installation" and h.delivery in applied for h in hooks),
        repo + "repository_updated": sum(
            h.event in ("repository", "installation_repositories") and h.delivery in applied
            for h in hooks
        ),
        repo + "issue_created": len(expected.issues),  # a deleted one may never have been
        repo + "issue_updated": sum(h.event == "issues" and h.delivery in applied for h in hooks),
        repo + "pull_request_updated": sum(
            h.event == "pull_request" and h.delivery in applied for h in hooks
        ),
    }
    assert {s: subjects[s] for s in exact} == exact
    for subject, most in bounded.items():
        assert subjects[subject] <= most, (subject, subjects[subject], most)
    assert len(live_issues) <= subjects[repo + "issue_created"]
    assert set(subjects) <= set(exact) | set(bounded), subjects
