"""ListIssues latency over a real gRPC channel to `python -m polar_repository` (its own
process), on a repository with 5,000 issues, 100 per page: every page of the repository in
turn, newest first, as a client paging through it would.

Runs:
- 1 caller: one ListIssues at a time (the latency a single client sees; target p99 < 20 ms);
- the same with a state filter (closed issues, a quarter of them);
- N concurrent callers on one channel (throughput; latency then includes queueing).

Floor: the service's own query (listing.py: the page as one JSON text) straight through an
asyncpg connection from this process: no gRPC, no session/transaction, no Python mapping.
The database also holds other repositories' issues (`--other-issues`), so the indexes, not
the table size, must keep each page cheap.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg
from polar.repository.v1 import repository_pb2
from polar.repository.v1 import repository_service_pb2 as pb
from polar.repository.v1 import repository_service_pb2_grpc as pb_grpc
from polar_db.engine import asyncpg_dsn, create_engine, create_sessionmaker, server_settings
from polar_db.models import Issue, Organization, OrganizationStatus, Platform, Repository
from polar_dev.infra import infra
from polar_repository import listing
from sqlalchemy import insert

from bench.common import (
    CPUS,
    HOST,
    LoadResult,
    RepositoryProcess,
    bench_channel,
    bench_database,
    bench_prefix,
    closed_loop,
    latency_summary,
    pid_cpu,
    postgres_cpu,
    table,
    write_results,
)
from bench.repository_upsert import issue_rows, repository_rows

TARGET_P99_MS = 20.0
# What listing.page runs (the whole page as one JSON text), in asyncpg's $n placeholders.
FIRST_PAGE_SQL = (
    listing._page_sql("issues", listing.ISSUE_FIELDS, state=False, before=False)
    .replace(":repository_id", "$1")
    .replace(":limit", "$2")
)
NEXT_PAGE_SQL = (
    listing._page_sql("issues", listing.ISSUE_FIELDS, state=False, before=True)
    .replace(":repository_id", "$1")
    .replace(":limit", "$2")
    .replace(":before", "$3")
)


@dataclass(frozen=True)
class ListConfig:
    issues: int = 5_000
    other_repositories: int = 9
    page_size: int = 100
    walks: int = 20  # sequential walks through every page (1 caller)
    concurrency: int = 8
    warmup: float = 1.0
    duration: float = 5.0


async def seed(url: str, config: ListConfig) -> uuid.UUID:
    """The repository under test (5,000 issues) among others of the same size."""
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    org_id = uuid.uuid4()
    try:
        async with sessionmaker.begin() as session:
            await session.execute(
                insert(Organization).values(
                    id=org_id,
                    platform=Platform.github,
                    name="bench-org",
                    external_id=1,
                    is_personal=False,
                    status=OrganizationStatus.active,
                )
            )
            repos = repository_rows(org_id, 1 + config.other_repositories, base=1_000)
            await session.execute(insert(Repository), repos)
        for i, repo in enumerate(repos):
            rows = issue_rows(org_id, [repo["id"]], config.issues, base=10_000_000 * (i + 1))
            for start in range(0, len(rows), 5_000):
                async with sessionmaker.begin() as session:
                    await session.execute(insert(Issue), rows[start : start + 5_000])
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("VACUUM ANALYZE")
    finally:
        await engine.dispose()
    repository_id: uuid.UUID = repos[0]["id"]
    return repository_id


Walk = Callable[[], Awaitable[list[float]]]


def grpc_walk(
    stub: pb_grpc.RepositoryServiceAsyncStub,
    repository_id: uuid.UUID,
    page_size: int,
    state: repository_pb2.IssueState.ValueType = repository_pb2.ISSUE_STATE_UNSPECIFIED,
) -> Walk:
    async def walk() -> list[float]:
        latencies = []
        token = ""
        seen = 0
        while True:
            started = time.perf_counter()
            response = await stub.ListIssues(
                pb.ListIssuesRequest(
                    repository_id=str(repository_id),
                    state=state,
                    page_size=page_size,
                    page_token=token,
                ),
                timeout=10,
            )
            latencies.append((time.perf_counter() - started) * 1000)
            seen += len(response.issues)
            token = response.next_page_token
            if not token:
                return latencies

    return walk


def floor_walk(conn: asyncpg.Connection, repository_id: uuid.UUID, page_size: int) -> Walk:
    async def walk() -> list[float]:
        latencies = []
        last: int | None = None
        while True:
            started = time.perf_counter()
            if last is None:
                text = await conn.fetchval(FIRST_PAGE_SQL, repository_id, page_size + 1)
            else:
                text = await conn.fetchval(NEXT_PAGE_SQL, repository_id, page_size + 1, last)
            latencies.append((time.perf_counter() - started) * 1000)
            rows = json.loads(text)
            if len(rows) <= page_size:
                return latencies
            last = rows[page_size - 1]["number"]

    return walk


async def walks(name: str, walk: Walk, count: int) -> dict[str, Any]:
    await walk()  # warm-up: caches, prepared statements, the channel
    latencies: list[float] = []
    for _ in range(count):
        latencies += await walk()
    return {"name": name, "calls": len(latencies), **latency_summary(latencies)}


async def run(server_url: str, nats_url: str, config: ListConfig) -> dict[str, Any]:
    sequential: list[dict[str, Any]] = []
    loads: list[LoadResult] = []
    async with bench_database(server_url) as url, bench_prefix(nats_url) as prefix:
        repository_id = await seed(url, config)
        service = RepositoryProcess(url, nats_url, prefix)
        await service.start()
        try:
            async with bench_channel(f"{HOST}:{service.port}") as channel:
                stub = pb_grpc.RepositoryServiceStub(channel)
                sequential.append(
                    await walks(
                        "grpc ListIssues, 1 caller",
                        grpc_walk(stub, repository_id, config.page_size),
                        config.walks,
                    )
                )
                sequential.append(
                    await walks(
                        "grpc ListIssues state=closed, 1 caller",
                        grpc_walk(
                            stub, repository_id, config.page_size, repository_pb2.ISSUE_STATE_CLOSED
                        ),
                        config.walks,
                    )
                )
                loads.append(await _load(stub, repository_id, config, service.pid, url))
        finally:
            await service.stop()
        conn = await asyncpg.connect(
            asyncpg_dsn(url), server_settings=server_settings("repository", role="")
        )
        try:
            sequential.append(
                await walks(
                    "floor: the same SQL via asyncpg, 1 caller",
                    floor_walk(conn, repository_id, config.page_size),
                    config.walks,
                )
            )
        finally:
            await conn.close()

    print(
        f"\n== ListIssues: a repository of {config.issues:,} issues "
        f"({config.other_repositories} more repositories alike), {config.page_size} per page, "
        f"every page in turn"
    )
    load_rows = [
        [r.name, r.as_dict()["requests"], r.as_dict()["p50_ms"], r.as_dict()["p99_ms"], r.rps]
        for r in loads
    ]
    print(
        table(
            ["run", "calls", "p50 ms", "p99 ms", "req/s"],
            [[s["name"], s["calls"], s["p50_ms"], s["p99_ms"], "-"] for s in sequential]
            + load_rows,
        )
    )
    p99 = sequential[0]["p99_ms"]
    print(
        f"   target: p99 < {TARGET_P99_MS:g} ms with 1 caller -> "
        f"{'met' if p99 < TARGET_P99_MS else 'NOT met'} ({p99} ms). {CPUS} CPUs shared by "
        "this process, the service and PostgreSQL."
    )
    out = {
        "config": asdict(config),
        "sequential": sequential,
        "load": [r.as_dict() for r in loads],
        "target_p99_ms": TARGET_P99_MS,
    }
    print(f"   results: {write_results('list_issues', out)}")
    return out


async def _load(
    stub: pb_grpc.RepositoryServiceAsyncStub,
    repository_id: uuid.UUID,
    config: ListConfig,
    pid: int,
    url: str,
) -> LoadResult:
    """Concurrent callers, each asking for a random page (a token for a random number)."""
    from polar_kit.paging import encode_token

    tokens: Sequence[str] = ["", *(encode_token([n]) for n in range(101, config.issues, 100))]

    async def call(_: int) -> object:
        return await stub.ListIssues(
            pb.ListIssuesRequest(
                repository_id=str(repository_id),
                page_size=config.page_size,
                page_token=random.choice(tokens),
            ),
            timeout=10,
        )

    return await closed_loop(
        f"grpc ListIssues, {config.concurrency} callers, random pages",
        call,
        concurrency=config.concurrency,
        warmup=config.warmup,
        duration=config.duration,
        probes={
            "bench": pid_cpu(os.getpid()),
            "server": pid_cpu(pid),
            "postgres": postgres_cpu(url),
        },
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.list_issues", description=__doc__)
    parser.add_argument("--issues", type=int, default=5_000)
    parser.add_argument("--other-repositories", type=int, default=9)
    parser.add_argument("--walks", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=5.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = ListConfig(
        issues=args.issues,
        other_repositories=args.other_repositories,
        walks=args.walks,
        concurrency=args.concurrency,
        duration=args.duration,
    )
    with infra(ephemeral=True) as servers:
        asyncio.run(run(servers.database_url, servers.nats_url, config))


if __name__ == "__main__":
    main()
