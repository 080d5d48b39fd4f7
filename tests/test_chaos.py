"""Chaos: the cluster keeps every accepted webhook through SIGKILLs and PostgreSQL refusals.

On its own PostgreSQL and nats-server (started here, in a temporary folder: the machine's
shared servers are never touched), the organization, repository and gateway processes run
while a seeded generator sends mixed, shuffled and duplicated deliveries for several
organizations (installation.created, installation_repositories.added, issues opened and
edited several times) through the gateway, signed, retrying like GitHub until a 202. At
random moments (same seed) one fault is injected:

- SIGKILL of the organization, repository or gateway process, restarted at once;
- SIGKILL of nats-server, restarted a moment later (JetStream on disk);
- SIGKILL of PostgreSQL (every server process), restarted: crash recovery;
- PostgreSQL refusing connections with 57P03 for several seconds: a fast shutdown, then a
  start as a standby with hot_standby=off (the real server answering "the database system
  is not accepting connections"), then promoted.

Against a three-node JetStream cluster (three nats-server processes on loopback, routes
between them, each with its own store; streams with three replicas; POLAR_NATS_URL listing
all three), the NATS fault is instead:

- SIGKILL of the webhook stream's leader (found with the JetStream API: stream info
  `cluster.leader`), restarted once the others have elected a new leader;
- SIGSTOP of the event stream's leader for a few seconds, then SIGCONT.

At the end: the database equals the oracle computed from the payloads (newest version of
each issue), every accepted delivery was processed exactly once (one processed mark per
delivery and consumer, one *_created event per row), the outbox equals POLAR_EVENTS event
for event, and nothing is parked. The figures are printed.

Size and seed: POLAR_CHAOS_ORGS (3), POLAR_CHAOS_SEED (random, printed; set it to replay a
failure), POLAR_CHAOS_NATS_NODES (1 or 3; unset: both variants). `make chaos` runs the
one-node variant alone, `make chaos-cluster` the cluster one; `make test` runs both at this
CI size.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import hmac
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import pytest
from polar_db.migrate import upgrade
from polar_db.testing import SEARCH_PATH_ALL, all_services_views
from polar_dev.infra import EmbeddedNats, EmbeddedPostgres, free_port
from polar_dev.paths import github_fixtures_dir, repo_root
from polar_dev.services import ServiceSpec, discover_services
from polar_kit.nats import EVENTS, PARKED, StreamSpec
from polar_kit.nats import WEBHOOKS as WEBHOOK_STREAM

ORGS = int(os.environ.get("POLAR_CHAOS_ORGS", "3"))
SECONDS = float(os.environ.get("POLAR_CHAOS_SECONDS", "40"))  # deliveries spread over this
NATS_NODES = [int(n) for n in os.environ.get("POLAR_CHAOS_NATS_NODES", "1,3").split(",")]
SEED = int(os.environ.get("POLAR_CHAOS_SEED") or random.SystemRandom().randrange(1, 10**6))
REPOS_PER_ORG = 2
ISSUES_PER_REPO = 6
VERSIONS_PER_ISSUE = 4
DUPLICATES = 0.3  # share of deliveries GitHub sends twice
SECRET = "chaos-webhook-secret"
WEBHOOKS = github_fixtures_dir() / "webhooks"


# --- deliveries and the oracle ---------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    event: str
    payload: dict[str, Any]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def body(self) -> bytes:
        return json.dumps(self.payload).encode()


@dataclass
class Oracle:
    organizations: set[int] = field(default_factory=set)  # account ids
    repositories: dict[int, int] = field(default_factory=dict)  # repo id -> account id
    issues: dict[int, str] = field(default_factory=dict)  # issue id -> title of the newest


def _load(path: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((WEBHOOKS / path).read_text())
    return loaded


def generate(rng: random.Random) -> tuple[list[Delivery], Oracle]:
    created, added, opened = (
        _load("installation/created.payload.json"),
        _load("installation_repositories/added.payload.json"),
        _load("issues/opened.payload.json"),
    )
    oracle = Oracle()
    deliveries: list[Delivery] = []
    base = 50_000_000 + SEED * 1000 % 10_000_000 * 10
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for o in range(ORGS):
        account = base + o * 1000
        login = f"chaos-{SEED}-{o}"
        installation = copy.deepcopy(created["installation"])
        installation["id"] = account + 1
        installation["account"] |= {"id": account, "login": login}
        deliveries.append(
            Delivery(
                "installation",
                created | {"installation": installation, "repositories": [], "sender": {"id": 1}},
            )
        )
        oracle.organizations.add(account)
        repos: list[dict[str, Any]] = [
            {"id": account + 10 + r, "name": f"repo-{r}", "full_name": f"{login}/repo-{r}"}
            | {"private": False}
            for r in range(REPOS_PER_ORG)
        ]
        deliveries.append(
            Delivery(
                "installation_repositories",
                added
                | {
                    "installation": installation,
                    "repositories_added": repos,
                    "repositories_removed": [],
                },
            )
        )
        for r, repo in enumerate(repos):
            oracle.repositories[repo["id"]] = account
            full_repo = copy.deepcopy(opened["repository"]) | repo
            full_repo["owner"] = {"id": account, "login": login}
            for i in range(ISSUES_PER_REPO):
                issue_id = account + 100 + r * 50 + i
                for v in range(VERSIONS_PER_ISSUE):
                    issue = copy.deepcopy(opened["issue"]) | {
                        "id": issue_id,
                        "number": i + 1,
                        "title": f"{login}/{repo['name']}#{i + 1} v{v}",
                        "created_at": start.isoformat(),
                        "updated_at": (start + timedelta(minutes=v)).isoformat(),
                    }
                    payload = opened | {
                        "action": "opened" if v == 0 else "edited",
                        "issue": issue,
                        "repository": full_repo,
                        "installation": {"id": installation["id"]},
                    }
                    deliveries.append(Delivery("issues", payload))
                newest = VERSIONS_PER_ISSUE - 1
                oracle.issues[issue_id] = f"{login}/{repo['name']}#{i + 1} v{newest}"
    copies = [d for d in deliveries if rng.random() < DUPLICATES]
    everything = deliveries + copies
    rng.shuffle(everything)
    return everything, oracle


# --- processes --------------------------------------------------------------------------------


@dataclass
class Service:
    spec: ServiceSpec
    port: int
    log: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.spec.module],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env={**self.env, self.spec.port_env: str(self.port)},
                cwd=repo_root(),
                start_new_session=True,
            )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        self.kill()
        self.restarts += 1
        self.start()


def postgres_pids(pg: EmbeddedPostgres) -> list[int]:
    """The postmaster and its children (all started by this test)."""
    try:
        postmaster = int((pg.pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    children = subprocess.run(
        ["ps", "--ppid", str(postmaster), "-o", "pid="], capture_output=True, text=True
    ).stdout.split()
    return [postmaster, *map(int, children)]


def kill_postgres(pg: EmbeddedPostgres) -> None:
    for pid in postgres_pids(pg):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.3)


def pg_ctl(pg: EmbeddedPostgres, *args: str) -> None:
    """pg_ctl as the server's user; its output in the error when it fails."""
    done = subprocess.run(
        [str(pg.bin_dir() / "pg_ctl"), "-D", str(pg.pgdata), *args],
        capture_output=True,
        text=True,
        cwd=pg.pgdata.parent,
        env={**os.environ, "LC_ALL": "C"},
        **pg._as_user,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pg_ctl {args}: {done.stdout}{done.stderr}")


def refusing_postgres(pg: EmbeddedPostgres) -> None:
    """Fast shutdown, then a standby with hot_standby=off: real 57P03 to every connection."""
    pg_ctl(pg, "-m", "fast", "-w", "-t", "60", "stop")
    signal_file = pg.pgdata / "standby.signal"
    signal_file.touch()
    if pg._as_user:
        os.chown(signal_file, pg._as_user["user"], pg._as_user["group"])
    options = f"-h 127.0.0.1 -p {pg.port} -k '' -c hot_standby=off"
    pg_ctl(pg, "-l", str(pg.log), "-w", "-t", "60", "-o", options, "start")


def promote_postgres(pg: EmbeddedPostgres) -> None:
    pg_ctl(pg, "-w", "-t", "60", "promote")


def nats_nodes(folder: Path, count: int) -> list[EmbeddedNats]:
    """One JetStream server, or `count` forming a cluster (routes to each other) on loopback."""
    if count == 1:
        return [EmbeddedNats(folder / "nats", free_port())]
    cluster_ports = [free_port() for _ in range(count)]
    routes = ",".join(f"nats://127.0.0.1:{p}" for p in cluster_ports)
    return [
        EmbeddedNats(
            folder / f"nats-{i}",
            free_port(),
            [
                *("--name", f"n{i}", "--cluster_name", "chaos"),
                *("--cluster", f"nats://127.0.0.1:{port}", "--routes", routes),
            ],
        )
        for i, port in enumerate(cluster_ports)
    ]


async def jetstream(servers: list[str], what: str) -> Any:
    """`what` of the JetStream API ("account" or a stream's info), asked until it answers:
    a paused or killed node, or a cluster without a leader, answers nothing meanwhile."""
    deadline = time.monotonic() + 60
    while True:
        try:
            nc = await nats.connect(servers=servers, connect_timeout=1, allow_reconnect=False)
            try:
                js = nc.jetstream(timeout=1)
                return await (js.account_info() if what == "account" else js.stream_info(what))
            finally:
                await nc.close()
        except (TimeoutError, OSError, nats.errors.Error):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@dataclass
class World:
    pg: EmbeddedPostgres
    nats: list[EmbeddedNats]
    database_url: str
    services: dict[str, Service]
    gateway_url: str
    leader_changes: list[str] = field(default_factory=list)  # printed with the figures

    @property
    def nats_servers(self) -> list[str]:
        return [node.url for node in self.nats]

    async def leader(self, stream: StreamSpec) -> EmbeddedNats | None:
        """The node leading `stream` (its replicas have elected one), or None."""
        info = await jetstream(self.nats_servers, stream.name)
        name = info.cluster.leader if info.cluster else None
        return self.nats[int(name.removeprefix("n"))] if name else None


async def leader_of(
    world: World, stream: StreamSpec, not_: EmbeddedNats | None = None
) -> EmbeddedNats:
    """Waits for `stream` to have a leader (other than `not_`)."""
    while True:
        leader = await world.leader(stream)
        if leader is not None and leader is not not_:
            return leader
        await asyncio.sleep(0.1)


@pytest.fixture(params=NATS_NODES, ids=lambda n: f"nats{n}")
async def world(request: pytest.FixtureRequest) -> AsyncIterator[World]:
    # Not pytest's tmp_path: every pytest session on the machine resets its parent to 0700,
    # which would lock PostgreSQL's (unprivileged) user out of its data folder mid-run.
    folder = Path(tempfile.mkdtemp(prefix="polar-chaos-"))
    pg = EmbeddedPostgres(folder / "pgdata", free_port(), durable=True)
    nodes = nats_nodes(folder, request.param)
    await asyncio.to_thread(pg.start)
    for node in nodes:
        await asyncio.to_thread(node.start)
    await jetstream([node.url for node in nodes], "account")  # a cluster: its meta leader
    database_url = await asyncio.to_thread(pg.ensure_database, "chaos")
    await asyncio.to_thread(upgrade, database_url)
    specs = {s.name: s for s in discover_services(repo_root() / "services")}
    ports = {name: free_port() for name in specs}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("POLAR_")},
        "PYTHONUNBUFFERED": "1",
        "POLAR_DEV_MODE": "true",
        "POLAR_DATABASE_URL": database_url,
        "POLAR_NATS_URL": ",".join(node.url for node in nodes),
        "POLAR_NATS_REPLICAS": str(len(nodes)),
        "POLAR_GITHUB_WEBHOOK_SECRET": SECRET,
        "POLAR_GITHUB_API_URL": "http://127.0.0.1:9",  # no sync: no GitHub App configured
        "POLAR_CONSUMER_RETRY_BASE_SECONDS": "0.2",
        "POLAR_CONSUMER_RETRY_MAX_SECONDS": "1",
        "POLAR_CONSUMER_MAX_ATTEMPTS": "3",
        "POLAR_OUTAGE_RETRY_MAX_SECONDS": "1",
        "POLAR_OUTBOX_POLL_SECONDS": "0.2",
        "POLAR_SHUTDOWN_GRACE_SECONDS": "2",
        "POLAR_GATEWAY_HTTP_HOST": "127.0.0.1",
        # Every service's port variable: each finds the others (the reward service calls two).
        **{spec.port_env: str(ports[name]) for name, spec in specs.items()},
    }
    services = {
        name: Service(spec, ports[name], folder / f"{name}.log", env)
        for name, spec in specs.items()
    }
    for service in services.values():
        service.start()
    try:
        yield World(pg, nodes, database_url, services, f"http://127.0.0.1:{ports['gateway']}")
    finally:
        for service in services.values():
            service.kill()
        for node in nodes:
            if node._process is not None:
                node._process.kill()  # SIGKILL works on a paused (SIGSTOP) node too
            await asyncio.to_thread(node.stop)
        kill_postgres(pg)
        shutil.rmtree(folder, ignore_errors=True)


# --- sending ----------------------------------------------------------------------------------


@dataclass
class Figures:
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # answers other than 202
    faults: Counter[str] = field(default_factory=Counter)


async def send(http: httpx.AsyncClient, delivery: Delivery, figures: Figures) -> None:
    """Like GitHub: until a 2xx (with a pause); 413 or 4xx would be a bug here."""
    body = delivery.body
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": delivery.event,
        "X-GitHub-Delivery": delivery.id,
        "X-Hub-Signature-256": "sha256="
        + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
    }
    delay = 0.2
    while True:
        figures.sent += 1
        try:
            response = await http.post(
                "/api/v2/integrations/github/webhook", content=body, headers=headers, timeout=10
            )
        except httpx.TransportError as e:
            figures.refused[type(e).__name__] += 1
        else:
            if response.status_code == 202:
                figures.accepted += 1
                figures.duplicates += bool(response.json().get("duplicate"))
                return
            assert response.status_code >= 500, response.text
            figures.refused[str(response.status_code)] += 1
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2)


KINDS = ["repository", "organization", "gateway", "postgres-kill", "postgres-57P03"]
NATS_KINDS = ["nats"]  # one server
CLUSTER_KINDS = ["nats-leader-kill", "nats-leader-pause"]


async def new_leader(world: World, stream: StreamSpec, old: EmbeddedNats, fault: str) -> None:
    """Waits for `stream` to have a leader other than `old`; the time it took is a figure."""
    started = time.monotonic()
    leader = await asyncio.wait_for(leader_of(world, stream, old), 30)
    world.leader_changes.append(
        f"{fault} {stream.name}: n{world.nats.index(old)} -> n{world.nats.index(leader)}"
        f" in {time.monotonic() - started:.1f} s"
    )


async def inject(world: World, rng: random.Random, figures: Figures, done: asyncio.Event) -> None:
    """Faults until `done`, and at least one of each kind (in a seeded order first)."""
    kinds = KINDS + (NATS_KINDS if len(world.nats) == 1 else CLUSTER_KINDS)
    order = iter(rng.sample(kinds, len(kinds)))
    while not done.is_set() or len(figures.faults) < len(kinds):
        await asyncio.sleep(rng.uniform(1.0, 4.0))
        kind = next(order, None) or rng.choice(kinds)
        figures.faults[kind] += 1
        if kind in world.services:
            world.services[kind].restart()
        elif kind == "nats":
            node = world.nats[0]
            if node._process is not None:
                node._process.kill()  # SIGKILL
            node.stop()
            await asyncio.sleep(rng.uniform(0.5, 2))
            await asyncio.to_thread(node.start)
        elif kind == "nats-leader-kill":
            node = await leader_of(world, WEBHOOK_STREAM)
            assert node._process is not None
            node._process.kill()  # SIGKILL
            node.stop()
            await new_leader(world, WEBHOOK_STREAM, node, "SIGKILL")
            await asyncio.to_thread(node.start)  # catches up from the new leader
        elif kind == "nats-leader-pause":
            node = await leader_of(world, EVENTS)
            assert node._process is not None
            node._process.send_signal(signal.SIGSTOP)
            try:
                await asyncio.wait_for(new_leader(world, EVENTS, node, "SIGSTOP"), 30)
                await asyncio.sleep(rng.uniform(1, 3))  # stopped a little longer
            finally:
                node._process.send_signal(signal.SIGCONT)
        elif kind == "postgres-kill":
            await asyncio.to_thread(kill_postgres, world.pg)
            await asyncio.to_thread(world.pg.start)  # crash recovery
        else:
            await asyncio.to_thread(refusing_postgres, world.pg)
            await asyncio.sleep(rng.uniform(3, 8))  # 57P03 all along
            await asyncio.to_thread(promote_postgres, world.pg)


# --- the test ---------------------------------------------------------------------------------


def tails(world: World, lines: int = 20) -> str:
    """The end of every process's log (the folder is deleted after the test)."""
    parts = []
    for name, service in world.services.items():
        text = service.log.read_text(errors="replace").splitlines()
        parts.append(f"--- {name} ---\n" + "\n".join(line[:300] for line in text[-lines:]))
    return "\n".join(parts)


async def state(database_url: str) -> dict[str, Any]:
    # Every service's tables at once (each has its outbox and marks: decision 0021).
    conn = await asyncpg.connect(
        database_url, timeout=5, server_settings={"search_path": SEARCH_PATH_ALL}
    )
    try:
        await conn.execute(all_services_views())
        orgs = {r[0] for r in await conn.fetch("SELECT external_id FROM organizations")}
        repos = {
            r[0]: r[1]
            for r in await conn.fetch(
                "SELECT r.external_id, o.external_id FROM repositories r"
                " JOIN organizations o ON o.id = r.organization_id WHERE r.deleted_at IS NULL"
            )
        }
        issues = {r[0]: r[1] for r in await conn.fetch("SELECT external_id, title FROM issues")}
        marks = Counter(r[0] for r in await conn.fetch("SELECT consumer FROM processed_messages"))
        outbox = {
            str(r[0]): r[1] for r in await conn.fetch("SELECT id, subject FROM outbox_events")
        }
        unpublished = await conn.fetchval(
            "SELECT count(*) FROM outbox_events WHERE published_at IS NULL"
        )
    finally:
        await conn.close()
    return {
        "orgs": orgs,
        "repos": repos,
        "issues": issues,
        "marks": marks,
        "outbox": outbox,
        "unpublished": unpublished,
    }


async def stream_ids(servers: list[str], stream: str) -> list[str]:
    """The message ids in `stream`, read again while the cluster answers "timeout" or "no
    responders": right after the last fault a restarted node may still be electing its
    stream's leader, which the services ride out and a one-shot read must too."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return await _stream_ids(servers, stream)
        except (
            nats.errors.TimeoutError,
            nats.errors.NoRespondersError,
            nats.js.errors.ServiceUnavailableError,
        ):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)


async def _stream_ids(servers: list[str], stream: str) -> list[str]:
    nc = await nats.connect(servers=servers)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        ids: list[str] = []
        if not info.state.messages:
            return ids
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                msg = await js.get_msg(stream, seq)
                ids.append((msg.headers or {}).get("Nats-Msg-Id", ""))
        return ids
    finally:
        await nc.close()


async def without_mark(world: World, distinct: dict[str, Delivery]) -> dict[str, Any]:
    """For a failure's report: the deliveries repository-webhooks holds no mark for, whether
    the webhook stream still has them, what was parked, and the consumer's own counts."""
    conn = await asyncpg.connect(
        world.database_url, timeout=5, server_settings={"search_path": SEARCH_PATH_ALL}
    )
    try:
        await conn.execute(all_services_views())
        marked = {
            r[0]
            for r in await conn.fetch(
                "SELECT message_id FROM processed_messages WHERE consumer = 'repository-webhooks'"
            )
        }
    finally:
        await conn.close()
    missing = {i: distinct[i] for i in sorted(set(distinct) - marked)}
    stored = set(await stream_ids(world.nats_servers, WEBHOOK_STREAM.name))
    parked: list[str] = []
    with contextlib.suppress(nats.js.errors.NotFoundError):
        parked = await stream_ids(world.nats_servers, PARKED.name)
    nc = await nats.connect(servers=world.nats_servers)
    try:
        info = await nc.jetstream().consumer_info(WEBHOOK_STREAM.name, "repository-webhooks")
    finally:
        await nc.close()
    return {
        "missing": {
            i: (d.event, d.payload.get("action"), "on the stream" if i in stored else "NOT stored")
            for i, d in missing.items()
        },
        "parked": len(parked),
        "consumer": {
            "pending": info.num_pending,
            "ack_pending": info.num_ack_pending,
            "redelivered": info.num_redelivered,
            "ack_floor": info.ack_floor.stream_seq if info.ack_floor else None,
        },
    }


async def test_chaos(world: World) -> None:
    rng = random.Random(SEED)
    deliveries, oracle = generate(rng)
    distinct = {d.id: d for d in deliveries}
    print(
        f"\nchaos: seed {SEED} (POLAR_CHAOS_SEED), {ORGS} organizations,"
        f" {len(world.nats)} NATS node(s)"
    )
    figures = Figures()
    started = time.monotonic()
    done = asyncio.Event()
    chaos = asyncio.create_task(inject(world, random.Random(SEED + 1), figures, done))

    async def one(n: int, delivery: Delivery) -> None:
        # Spread over SECONDS, so the faults land in the middle of the traffic.
        await asyncio.sleep(n * SECONDS / len(deliveries))
        await send(http, delivery, figures)

    async with httpx.AsyncClient(base_url=world.gateway_url) as http:
        await asyncio.gather(*(one(n, d) for n, d in enumerate(deliveries)))
    sent_in = time.monotonic() - started
    # Keep injecting a little longer, then stop and wait for the cluster to converge.
    await asyncio.sleep(3)
    done.set()
    await chaos
    last_fault = time.monotonic()

    expected = {
        "orgs": oracle.organizations,
        "repos": oracle.repositories,
        "issues": oracle.issues,
    }
    # Exactly once: one mark per distinct delivery each consumer takes.
    installation_created = sum(
        d.event == "installation" and d.payload["action"] == "created" for d in distinct.values()
    )
    want_marks = {
        "organization-installations": installation_created,
        "repository-webhooks": len(distinct),
    }
    # Converged once every delivery is handled, not only once the tables look right: an
    # older version of an issue (or a copy) may still be on its way (in the hands of a
    # killed process until ack_wait, or waiting for its repository) when the newest one
    # already made the table equal the oracle.
    current: dict[str, Any] = {}
    tables_at: float | None = None  # when the tables first equalled the oracle
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            current = await state(world.database_url)
            if {k: current[k] for k in expected} == expected and not current["unpublished"]:
                tables_at = tables_at or time.monotonic()
                if {c: current["marks"][c] for c in want_marks} == want_marks:
                    break
        await asyncio.sleep(1)
    converged = time.monotonic() - last_fault
    marks_lag = time.monotonic() - tables_at if tables_at else 0.0
    assert {k: current.get(k) for k in expected} == expected, tails(world)
    marks = {c: current["marks"][c] for c in want_marks}
    if marks != want_marks:
        unmarked = await without_mark(world, distinct)
        raise AssertionError(f"marks {marks} != {want_marks}: {unmarked}\n{tails(world)}")
    created = Counter(s.rsplit(".", 1)[1] for s in current["outbox"].values())
    assert created["created"] == ORGS
    assert created["repository_created"] == len(oracle.repositories)
    assert created["issue_created"] == len(oracle.issues)
    # The outbox equals the stream, event for event; nothing parked.
    events = await stream_ids(world.nats_servers, EVENTS.name)
    assert sorted(events) == sorted(current["outbox"])
    with contextlib.suppress(nats.js.errors.NotFoundError):
        assert await stream_ids(world.nats_servers, PARKED.name) == []

    restarts = {name: s.restarts for name, s in world.services.items()}
    logs = {name: s.log.read_text(errors="replace") for name, s in world.services.items()}
    log_kb = {name: round(len(text) / 1024) for name, text in logs.items()}
    tracebacks = {name: text.count('"exception"') for name, text in logs.items()}
    print(
        f"chaos: {len(deliveries)} deliveries ({len(distinct)} distinct, "
        f"{len(deliveries) - len(distinct)} GitHub duplicates), {figures.sent} requests, "
        f"{figures.accepted} accepted ({figures.duplicates} as duplicates), "
        f"refused meanwhile: {dict(figures.refused)}; sent in {sent_in:.1f} s"
    )
    print(
        f"chaos: faults {dict(figures.faults)}, restarts {restarts}; converged "
        f"{converged:.1f} s after the last fault; {len(oracle.issues)} issues, "
        f"{len(current['outbox'])} events = stream, 0 parked, 0 lost, 0 twice; the last"
        f" marks came {marks_lag:.1f} s after the tables equalled the oracle"
    )
    print(f"chaos: logs {log_kb} kB, tracebacks logged {tracebacks}")
    if world.leader_changes:
        print(f"chaos: leader changes: {'; '.join(world.leader_changes)}")
