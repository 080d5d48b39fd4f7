"""Gateway benchmarks (issue 4), each beside its floor measured in the same run.

- ingress: signed `issues.opened` deliveries POSTed by 32 concurrent senders to
  `python -m polar_gateway` (verify, parse, publish to JetStream, 202 after the PubAck);
  floor: a bare ASGI app under the same uvicorn that only verifies the HMAC.
- end_to_end: 10,000 distinct `issues.opened` deliveries POSTed by 32 senders, from the POST
  to a row in PostgreSQL (the repository service's webhook consumer), absolute figures.
- organizations: GET /api/v2/user/organizations for a user in 10 organizations with 20
  repositories each, 32 concurrent clients, through the gateway and both services (each its
  own process); floor: a bare ASGI app reading the same data with one SQL query.

    uv run python -m bench.gateway [--only ingress|organizations|end_to_end] [--duration 8]

Every process (gateway, services, floors) is its own OS process; the load generator
(aiohttp, in this process) and PostgreSQL/NATS share the machine's CPUs with them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp
import nats
from polar.repository.v1 import events_pb2 as repo_events
from polar.repository.v1 import repository_pb2
from polar_db.engine import asyncpg_dsn, create_engine
from polar_db.models import (
    Issue,
    Organization,
    OrganizationStatus,
    Platform,
    Repository,
    User,
    UserOrganization,
)
from polar_dev.infra import free_port, infra
from polar_dev.paths import github_fixtures_dir
from polar_gateway.sessions import TokenSigner
from polar_gateway.settings import GatewaySettings
from sqlalchemy import func, insert, select, update

from bench.common import (
    HOST,
    INTERNAL_SECRET,
    TOKEN_KEY,
    LoadResult,
    bench_database,
    bench_prefix,
    closed_loop,
    latency_summary,
    pid_cpu,
    postgres_cpu,
    process_cpu,
    table,
    write_results,
)

TARGET_RATIO = 0.5
SECRET = "bench-webhook-secret"
SESSION_SECRET = "bench-session-secret-" + "x" * 32


@dataclass(frozen=True)
class Config:
    concurrency: int = 32
    warmup: float = 2.0
    duration: float = 8.0
    organizations: int = 10
    repositories_per_organization: int = 20


# --- processes -------------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    args: Sequence[str]
    env: Mapping[str, str]
    process: asyncio.subprocess.Process | None = None
    log: IO[bytes] | None = None

    async def start(self) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            *self.args,
            env={**os.environ, **self.env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def tail(self, lines: int = 20) -> str:
        if self.log is None:
            return ""
        self.log.seek(0)
        return "\n".join(self.log.read().decode(errors="replace").splitlines()[-lines:])

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self.log is not None:
            self.log.close()
            self.log = None


@contextlib.asynccontextmanager
async def processes(*specs: Process) -> AsyncIterator[None]:
    try:
        for spec in specs:
            await spec.start()
        yield
    finally:
        for spec in reversed(specs):
            await spec.stop()


async def wait_http(
    session: aiohttp.ClientSession, url: str, process: Process, ok: int = 200
) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert process.process is not None
        if process.process.returncode is not None:
            raise RuntimeError(f"{process.name} exited:\n{process.tail()}")
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(url) as response:
                if response.status == ok:
                    return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{process.name} not ready at {url}:\n{process.tail()}")
        await asyncio.sleep(0.2)


async def profile(process: Process, seconds: float) -> tuple[str, list[list[object]]]:
    """py-spy (`uv tool run py-spy`, from PyPI) on `process` for `seconds`: the functions
    with the most samples, by self and total share."""
    uv = os.environ.get("UV") or shutil.which("uv") or ".tools/bin/uv"
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        spy = await asyncio.create_subprocess_exec(
            uv, "tool", "run", "py-spy", "record", "--format", "raw", "--nonblocking",
            "-r", "200", "-d", str(int(seconds)), "-o", out.name, "-p", str(process.pid),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await spy.wait()
        lines = Path(out.name).read_text().splitlines()  # noqa: ASYNC240 - after the run
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in lines:
        stack, _, count = line.rpartition(" ")
        frames = [_frame(f) for f in stack.split(";")]
        n = int(count)
        samples += n
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    top: list[list[object]] = [
        [round(100 * n / samples, 1), round(100 * total[f] / samples, 1), f]
        for f, n in own.most_common(40)
    ]
    return process.name, top


def _frame(frame: str) -> str:
    """`send (uvicorn/protocols/http/httptools_impl.py:470)` -> `send httptools_impl.py`."""
    function, _, where = frame.partition(" (")
    return f"{function} {where.rsplit('/', 1)[-1].split(':')[0]}"


def listening_pid(port: int) -> int | None:
    """The process listening on TCP `port` here (to read its CPU), if this user can see it."""
    inodes = set()
    for table_path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table_path).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(proc.name)
    return None


def uvicorn_args(app: str, port: int) -> list[str]:
    # The gateway's own server settings (polar_gateway.__main__): uvloop, httptools, no access log.
    return [
        "-m", "uvicorn", app, "--host", HOST, "--port", str(port),
        "--log-level", "warning", "--no-access-log", "--lifespan", "on",
    ]  # fmt: skip


def gateway_process(port: int, nats_url: str, prefix: str, **targets: str) -> Process:
    env = {
        "POLAR_DEV_MODE": "true",  # a benchmark: its secrets are in the repository
        "POLAR_GATEWAY_HTTP_HOST": HOST,
        "POLAR_GATEWAY_HTTP_PORT": str(port),
        "POLAR_NATS_URL": nats_url,
        "POLAR_NATS_PREFIX": prefix,
        "POLAR_GITHUB_WEBHOOK_SECRET": SECRET,
        "POLAR_SESSION_SECRET": SESSION_SECRET,
        "POLAR_INTERNAL_SECRET": INTERNAL_SECRET,
        "POLAR_LOG_LEVEL": "WARNING",
        "POLAR_GITHUB_API_URL": f"http://{HOST}:9",
        **{f"POLAR_{k.upper()}": v for k, v in targets.items()},
    }
    return Process("gateway", ["-m", "polar_gateway"], env)


def service_processes(env: dict[str, str]) -> tuple[list[Process], dict[str, str]]:
    """The domain services behind the gateway, each on a free port, and the gateway's
    `<service>_grpc_target` settings for them (its /readyz waits for every one)."""
    ports = {name: free_port() for name in ("organization", "repository", "reward")}
    targets = {f"{name}_grpc_target": f"{HOST}:{port}" for name, port in ports.items()}
    processes = [
        Process(
            name,
            ["-m", f"polar_{name}"],
            env
            | {f"POLAR_{name.upper()}_GRPC_PORT": str(port)}
            | {f"POLAR_{key.upper()}": value for key, value in targets.items()},
        )
        for name, port in ports.items()
    ]
    return processes, targets


def ratio_row(result: LoadResult, floor: LoadResult) -> list[object]:
    summary = result.as_dict()
    ratio = result.rps / floor.rps if floor.rps else 0.0
    return [
        result.name,
        result.rps,
        summary["p50_ms"],
        summary["p99_ms"],
        result.errors,
        f"{ratio:.0%}" if result is not floor else "-",
        result.per_request("cpu server", 1000) or 0.0,
    ]


def verdict(ratio: float) -> str:
    met = "met" if ratio >= TARGET_RATIO else "NOT met"
    return f"target: at least {TARGET_RATIO:.0%} of the floor -> {ratio:.0%}, {met}"


HEADERS = ["run", "req/s", "p50 ms", "p99 ms", "errors", "vs floor", "server CPU ms/req"]


# --- ingress ---------------------------------------------------------------------------------


def signed_delivery() -> tuple[bytes, Callable[[], dict[str, str]]]:
    """The recorded issues.opened delivery, signed with SECRET: its body, and its headers
    with a new delivery id at each call."""
    body = (github_fixtures_dir() / "webhooks/issues/opened.payload.json").read_bytes()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()

    def headers() -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "X-GitHub-Event": "issues",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": signature,
        }

    return body, headers


async def ingress(nats_url: str, config: Config) -> dict[str, Any]:
    body, headers = signed_delivery()

    async def load(session: aiohttp.ClientSession, name: str, url: str, pid: int) -> LoadResult:
        async def send(_: int) -> None:
            async with session.post(url, data=body, headers=headers()) as response:
                await response.read()
                if response.status != 202:
                    raise RuntimeError(f"status {response.status}")

        return await closed_loop(
            name,
            send,
            concurrency=config.concurrency,
            warmup=config.warmup,
            duration=config.duration,
            probes={"cpu server": pid_cpu(pid), "cpu loadgen": pid_cpu(os.getpid())},
        )

    connector = aiohttp.TCPConnector(limit=config.concurrency)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        bench_prefix(nats_url) as prefix,
    ):
        floor_port, gateway_port = free_port(), free_port()
        floor = Process(
            "floor",
            uvicorn_args("bench.gateway_floor:hmac_app", floor_port),
            {"BENCH_SECRET": SECRET},
        )
        gateway = gateway_process(gateway_port, nats_url, prefix)
        async with processes(floor):
            await wait_http(session, f"http://{HOST}:{floor_port}/", floor, ok=401)
            floor_result = await load(
                session, "floor: bare ASGI, HMAC only", f"http://{HOST}:{floor_port}/", floor.pid
            )
        url = f"http://{HOST}:{gateway_port}/api/v2/integrations/github/webhook"
        async with processes(gateway):
            await wait_http(session, f"http://{HOST}:{gateway_port}/healthz", gateway)
            for _ in range(300):  # NATS connected and the streams exist
                async with session.post(url, data=body, headers=headers()) as response:
                    if response.status == 202:
                        break
                await asyncio.sleep(0.1)
            result = await load(session, "gateway: verify + JetStream ack", url, gateway.pid)
    ratio = result.rps / floor_result.rps if floor_result.rps else 0.0
    print(f"\ningress: {len(body):,} byte issues.opened deliveries, {config.concurrency} senders")
    print(table(HEADERS, [ratio_row(floor_result, floor_result), ratio_row(result, floor_result)]))
    print(verdict(ratio))
    return {
        "floor": floor_result.as_dict(),
        "gateway": result.as_dict(),
        "ratio": round(ratio, 3),
        "body_bytes": len(body),
    }


# --- GET /user/organizations -----------------------------------------------------------------


async def seed(url: str, config: Config) -> uuid.UUID:
    user = uuid.uuid4()
    orgs = [uuid.uuid4() for _ in range(config.organizations)]
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(User), [{"id": user, "username": "bench-user"}])
            # Other users' organizations too, so the queries select rather than scan all.
            others = [uuid.uuid4() for _ in range(200)]
            rows = [
                {
                    "id": org,
                    "platform": Platform.github,
                    "name": f"org-{i:04d}",
                    "external_id": 1_000_000 + i,
                    "installation_id": 2_000_000 + i,
                    "status": OrganizationStatus.active,
                    "avatar_url": f"https://avatars.example/{i}",
                    "installation_permissions": {"issues": "write", "metadata": "read"},
                }
                for i, org in enumerate([*orgs, *others])
            ]
            await conn.execute(insert(Organization), rows)
            await conn.execute(
                insert(UserOrganization), [{"organization_id": o, "user_id": user} for o in orgs]
            )
            repos = [
                {
                    "id": uuid.uuid4(),
                    "platform": Platform.github,
                    "organization_id": org,
                    "external_id": 10_000_000 + i * 100 + j,
                    "name": f"repository-{j:02d}",
                    "description": "A repository of the benchmark, with a description.",
                    "stars": 100 + j,
                    "forks": 10,
                    "watchers": 50,
                    "open_issues": 7,
                    "main_branch": "main",
                    "topics": ["python", "open-source"],
                    "license": "MIT",
                    "homepage": "https://example.com",
                    "is_private": False,
                }
                for i, org in enumerate([*orgs, *others])
                for j in range(config.repositories_per_organization)
            ]
            await conn.execute(insert(Repository), repos)
            await conn.exec_driver_sql("ANALYZE")
    finally:
        await engine.dispose()
    return user


async def organizations(server_url: str, nats_url: str, config: Config) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=config.concurrency)
    async with (
        bench_database(server_url) as url,
        bench_prefix(nats_url) as prefix,
        aiohttp.ClientSession(connector=connector) as session,
    ):
        user = await seed(url, config)
        floor_port, gateway_port = free_port(), free_port()

        async def load(
            name: str, request_url: str, pid: int, headers: dict[str, str], status: int = 200
        ) -> LoadResult:
            expected = config.organizations

            async def get(_: int) -> None:
                async with session.get(request_url, headers=headers) as response:
                    body = await response.read()
                    if response.status != status:
                        raise RuntimeError(f"status {response.status}: {body[:200]!r}")
                    if status == 200 and len(json.loads(body)["items"]) != expected:
                        raise RuntimeError("wrong number of organizations")

            return await closed_loop(
                name,
                get,
                concurrency=config.concurrency,
                warmup=config.warmup,
                duration=config.duration,
                probes={"cpu server": pid_cpu(pid), "cpu loadgen": pid_cpu(os.getpid())},
            )

        floor = Process(
            "floor",
            uvicorn_args("bench.gateway_floor:organizations_app", floor_port),
            {"BENCH_DATABASE_URL": asyncpg_dsn(url), "BENCH_USER_ID": str(user)},
        )
        floor_url = f"http://{HOST}:{floor_port}/api/v2/user/organizations"
        async with processes(floor):
            await wait_http(session, floor_url, floor)
            floor_result = await load("floor: bare ASGI, one SQL query", floor_url, floor.pid, {})

        common = {
            "POLAR_DATABASE_URL": url,
            "POLAR_NATS_URL": nats_url,
            "POLAR_NATS_PREFIX": prefix,
            "POLAR_INTERNAL_SECRET": INTERNAL_SECRET,
            "POLAR_TOKEN_ENCRYPTION_KEYS": TOKEN_KEY,
            "POLAR_LOG_LEVEL": "WARNING",
            "POLAR_GITHUB_API_URL": f"http://{HOST}:9",
        }
        services, targets = service_processes(common)
        gateway = gateway_process(gateway_port, nats_url, prefix, **targets)
        token, _ = TokenSigner(GatewaySettings(session_secret=SESSION_SECRET)).issue_session(
            str(user)
        )
        headers = {"Authorization": f"Bearer {token}"}
        gateway_url = f"http://{HOST}:{gateway_port}/api/v2/user/organizations"
        async with processes(*services, gateway):
            await wait_http(session, f"http://{HOST}:{gateway_port}/readyz", gateway)
            async with session.get(gateway_url, headers=headers) as response:
                body, etag = await response.read(), response.headers["ETag"]
            result = await load("gateway: read model", gateway_url, gateway.pid, headers)
            revalidated = await load(
                "gateway: If-None-Match -> 304",
                gateway_url,
                gateway.pid,
                headers | {"If-None-Match": etag},
                status=304,
            )
            fresh = await freshness(session, url, nats_url, prefix, gateway_url, headers, user)
            cpu = {
                s.name: (await pid_cpu(s.pid)()) for s in services
            }  # whole-run CPU of the services, for scale
        with tempfile.NamedTemporaryFile(suffix=".json") as file:
            file.write(body)
            file.flush()
            memory = Process(
                "memory",
                uvicorn_args("bench.gateway_floor:memory_app", floor_port),
                {"BENCH_BODY_FILE": file.name},
            )
            async with processes(memory):
                await wait_http(session, floor_url, memory)
                memory_result = await load(
                    "floor: bare ASGI, the same bytes from memory", floor_url, memory.pid, {}
                )
    ratio = result.rps / memory_result.rps if memory_result.rps else 0.0
    print(
        f"\nGET /user/organizations: {config.organizations} organizations x "
        f"{config.repositories_per_organization} repositories ({len(body):,} bytes), "
        f"{config.concurrency} clients"
    )
    rows = [ratio_row(r, memory_result) for r in (memory_result, floor_result, result, revalidated)]
    print(table(HEADERS, rows))
    print(
        verdict(ratio) + " (vs the same bytes from memory; target also >= 500 req/s, p99 <= 100 ms)"
    )
    print(
        f"freshness (event published -> visible on the route): median {fresh['median_ms']} ms, "
        f"max {fresh['max_ms']} ms over {fresh['samples']} changes (target <= 1,000 ms)"
    )
    return {
        "floor_sql": floor_result.as_dict(),
        "floor_memory": memory_result.as_dict(),
        "gateway": result.as_dict(),
        "gateway_304": revalidated.as_dict(),
        "ratio": round(ratio, 3),
        "body_bytes": len(body),
        "freshness": fresh,
        "services_cpu_seconds": cpu,
    }


async def freshness(
    session: aiohttp.ClientSession,
    database_url: str,
    nats_url: str,
    prefix: str,
    gateway_url: str,
    headers: dict[str, str],
    user: uuid.UUID,
    samples: int = 10,
) -> dict[str, Any]:
    """A repository's description changed in the database and its repository_updated event
    published (as the outbox relay would): the time until the route shows it."""
    engine = create_engine(database_url)
    nc = await nats.connect(nats_url)
    took: list[float] = []
    try:
        async with engine.connect() as conn:
            mine = (
                select(Repository)
                .join(
                    UserOrganization, UserOrganization.organization_id == Repository.organization_id
                )
                .where(UserOrganization.user_id == user)
                .limit(1)
            )
            repository = (await conn.execute(mine)).one()
        for n in range(samples):
            text = f"fresh-{n}-{uuid.uuid4().hex[:8]}"
            async with engine.begin() as conn:
                await conn.execute(
                    update(Repository)
                    .where(Repository.id == repository.id)
                    .values(description=text)
                )
            message = repository_pb2.Repository(
                id=str(repository.id),
                organization_id=str(repository.organization_id),
                description=text,
            )
            event_id = str(uuid.uuid4())
            started = time.perf_counter()
            await nc.publish(
                prefix + "polar.repository.v1.repository_updated",
                repo_events.RepositoryUpdated(repository=message).SerializeToString(),
                headers={
                    "Nats-Msg-Id": event_id,
                    "ce-id": event_id,
                    "ce-type": "polar.repository.v1.RepositoryUpdated",
                    "ce-source": "/bench",
                    "content-type": "application/protobuf",
                },
            )
            while True:
                async with session.get(gateway_url, headers=headers) as response:
                    if text.encode() in await response.read():
                        break
                if time.perf_counter() - started > 10:
                    raise RuntimeError("a change did not show within 10 s")
                await asyncio.sleep(0.002)
            took.append((time.perf_counter() - started) * 1000)
    finally:
        await nc.close()
        await engine.dispose()
    took.sort()
    return {
        "samples": samples,
        "median_ms": round(took[len(took) // 2], 1),
        "max_ms": round(took[-1], 1),
    }


# --- end to end: issues.opened from POST to a row ----------------------------------------------


async def end_to_end(
    server_url: str,
    nats_url: str,
    config: Config,
    count: int,
    profile_seconds: float = 0,
    other_repositories: int = 0,
) -> dict[str, Any]:
    """`count` distinct issues.opened deliveries POSTed by 32 senders to the gateway; the
    repository service's webhook consumer stores them; done when the last row is there."""
    fixture = json.loads(
        (github_fixtures_dir() / "webhooks/issues/opened.payload.json").read_text()
    )
    repo_external_id = int(fixture["repository"]["id"])
    bodies = []
    for i in range(count):
        fixture["issue"]["id"] = 900_000_000 + i
        fixture["issue"]["number"] = i + 1
        body = json.dumps(fixture).encode()
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        bodies.append((body, signature))
    connector = aiohttp.TCPConnector(limit=config.concurrency)
    async with (
        bench_database(server_url) as url,
        bench_prefix(nats_url) as prefix,
        aiohttp.ClientSession(connector=connector) as session,
    ):
        org_id, repo_id = uuid.uuid4(), uuid.uuid4()
        engine = create_engine(url)
        async with engine.begin() as conn:
            await conn.execute(
                insert(Organization),
                [
                    {
                        "id": org_id,
                        "platform": Platform.github,
                        "name": fixture["repository"]["owner"]["login"],
                        "external_id": int(fixture["repository"]["owner"]["id"]),
                        "installation_id": 77,
                        "status": OrganizationStatus.active,
                    }
                ],
            )
            await conn.execute(
                insert(Repository),
                [
                    {
                        "id": repo_id,
                        "platform": Platform.github,
                        "organization_id": org_id,
                        "external_id": repo_external_id,
                        "name": fixture["repository"]["name"],
                    }
                ],
            )
            if other_repositories:  # the organization's size (issue 16: cost must not grow)
                await conn.execute(
                    insert(Repository),
                    [
                        {
                            "id": uuid.uuid4(),
                            "platform": Platform.github,
                            "organization_id": org_id,
                            "external_id": 50_000_000 + i,
                            "name": f"other-{i:05d}",
                        }
                        for i in range(other_repositories)
                    ],
                )
        gateway_port = free_port()
        common = {
            "POLAR_DATABASE_URL": url,
            "POLAR_NATS_URL": nats_url,
            "POLAR_NATS_PREFIX": prefix,
            "POLAR_INTERNAL_SECRET": INTERNAL_SECRET,
            "POLAR_TOKEN_ENCRYPTION_KEYS": TOKEN_KEY,
            "POLAR_LOG_LEVEL": "WARNING",
            "POLAR_GITHUB_API_URL": f"http://{HOST}:9",
        }
        services, targets = service_processes(common)
        gateway = gateway_process(gateway_port, nats_url, prefix, **targets)
        url_ = f"http://{HOST}:{gateway_port}/api/v2/integrations/github/webhook"

        async def rows() -> int:
            async with engine.connect() as conn:
                result = await conn.execute(
                    select(func.count()).select_from(Issue).where(Issue.repository_id == repo_id)
                )
                return int(result.scalar_one())

        try:
            async with processes(*services, gateway):
                await wait_http(session, f"http://{HOST}:{gateway_port}/readyz", gateway)
                queue = list(reversed(bodies))
                latencies: list[float] = []

                async def sender() -> None:
                    while queue:
                        body, signature = queue.pop()
                        start = time.perf_counter()
                        headers = {
                            "Content-Type": "application/json",
                            "X-GitHub-Event": "issues",
                            "X-GitHub-Delivery": str(uuid.uuid4()),
                            "X-Hub-Signature-256": signature,
                        }
                        async with session.post(url_, data=body, headers=headers) as response:
                            await response.read()
                            if response.status != 202:
                                raise RuntimeError(f"status {response.status}")
                        latencies.append((time.perf_counter() - start) * 1000)

                pids = {p.name: p.pid for p in (gateway, *services)}
                pids["loadgen"] = os.getpid()
                nats_pid = listening_pid(int(nats_url.rsplit(":", 1)[1]))
                if nats_pid is not None:
                    pids["nats"] = nats_pid
                database_cpu = postgres_cpu(url)
                cpu_before = {name: process_cpu(pid) for name, pid in pids.items()}
                cpu_before["postgresql"] = await database_cpu()
                profiling = [
                    asyncio.create_task(profile(p, profile_seconds))
                    for p in (gateway, *services)
                    if profile_seconds
                ]
                started = time.perf_counter()
                await asyncio.gather(*(sender() for _ in range(config.concurrency)))
                accepted = time.perf_counter()
                stored = 0
                while stored < count and time.perf_counter() - started < 600:
                    await asyncio.sleep(0.1)
                    stored = await rows()
                done = time.perf_counter()
                cpu = {name: process_cpu(pid) - cpu_before[name] for name, pid in pids.items()}
                cpu["postgresql"] = await database_cpu() - cpu_before["postgresql"]
                profiles = dict(await asyncio.gather(*profiling))
        finally:
            await engine.dispose()
    per_delivery = {name: round(seconds / count * 1000, 3) for name, seconds in cpu.items()}
    servers = sum(v for k, v in per_delivery.items() if k != "loadgen")
    result = {
        "deliveries": count,
        "stored": stored,
        "ingress_seconds": round(accepted - started, 2),
        "ingress_per_second": round(count / (accepted - started), 1),
        "end_to_end_seconds": round(done - started, 2),
        "end_to_end_per_second": round(stored / (done - started), 1),
        "ingress_latency": latency_summary(latencies),
        "organization_repositories": other_repositories + 1,
        "cpu_ms_per_delivery": per_delivery,
        "cpu_ms_per_delivery_servers": round(servers, 3),
        "profiles": profiles,
    }
    for process, top in profiles.items():
        print(f"\nend to end: {process}, share of samples by function (self, then with callees)")
        print(table(["self %", "total %", "function"], top[:20]))
    print(
        f"\nend to end: {count:,} issues.opened deliveries, {config.concurrency} senders, "
        f"organization of {other_repositories + 1:,} repositories"
    )
    print(
        "CPU ms per delivery: "
        + ", ".join(f"{k} {v}" for k, v in per_delivery.items())
        + f"; all servers {servers:.3f} (target <= 1.2; NATS counts all of its clients)"
    )
    print(
        table(
            ["deliveries", "stored", "accepted/s", "POST to row /s", "all stored after s"],
            [
                [
                    count,
                    stored,
                    result["ingress_per_second"],
                    result["end_to_end_per_second"],
                    result["end_to_end_seconds"],
                ]
            ],
        )
    )
    return result


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway")
    parser.add_argument("--only", choices=["ingress", "organizations", "end_to_end"])
    parser.add_argument("--deliveries", type=int, default=10_000, help="end to end")
    parser.add_argument("--duration", type=float, default=Config.duration)
    parser.add_argument(
        "--profile", type=float, default=0, help="end to end: py-spy the servers this long (s)"
    )
    parser.add_argument(
        "--org-repositories",
        type=int,
        default=1,
        help="end to end: repositories of the deliveries' organization",
    )
    parser.add_argument("--warmup", type=float, default=Config.warmup)
    args = parser.parse_args(argv)
    config = Config(duration=args.duration, warmup=args.warmup)
    results: dict[str, Any] = {"config": vars(args)}
    with infra() as servers:
        if args.only in (None, "ingress"):
            results["ingress"] = await ingress(servers.nats_url, config)
        if args.only in (None, "organizations"):
            results["organizations"] = await organizations(
                servers.database_url, servers.nats_url, config
            )
        if args.only in (None, "end_to_end"):
            results["end_to_end"] = await end_to_end(
                servers.database_url,
                servers.nats_url,
                config,
                args.deliveries,
                args.profile,
                args.org_repositories - 1,
            )
    print(f"\nwritten to {write_results('gateway', results)}")


if __name__ == "__main__":
    asyncio.run(main())
