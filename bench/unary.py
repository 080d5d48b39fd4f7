"""Unary RPC throughput and latency (GetOrganization, CheckMembership) against the floor:
the same queries sent straight to PostgreSQL with an asyncpg pool from this process."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc.aio
from polar.organization.v1 import organization_service_pb2 as pb
from polar.organization.v1 import organization_service_pb2_grpc as pb_grpc
from polar_db.engine import asyncpg_dsn, create_engine
from polar_db.models import Organization, OrganizationStatus, Platform, User, UserOrganization
from sqlalchemy import insert

from bench.common import (
    CPUS,
    LoadResult,
    PostgresProbes,
    Probe,
    bench_channel,
    bench_database,
    bench_prefix,
    closed_loop,
    pid_cpu,
    running_service,
    table,
    write_results,
)

# What the service runs: repository.get_organization and repository.is_member, as SQLAlchemy
# compiles them (column list spelled out by the ORM, EXISTS correlated on organizations).
GET_SQL = "SELECT * FROM organization.organizations WHERE id = $1 AND deleted_at IS NULL"
MEMBER_SQL = """
SELECT EXISTS (
    SELECT user_organizations.user_id FROM organization.user_organizations
    WHERE user_organizations.organization_id = organizations.id
      AND user_organizations.user_id = $2
)
FROM organization.organizations WHERE organizations.id = $1 AND organizations.deleted_at IS NULL
"""

TARGET_RATIO = 0.5
ECHO_ARGS = (str(Path(__file__).with_name("echo_server.py")),)


@dataclass(frozen=True)
class UnaryConfig:
    organizations: int = 1000
    users: int = 1000
    memberships_per_user: int = 3
    concurrency: int = 32
    channels: int = 4  # size of the channel pool variant
    floor_pool: int = 10
    warmup: float = 2.0
    duration: float = 8.0


@dataclass(frozen=True)
class Seed:
    organizations: list[uuid.UUID]
    # Half of them members, half random (mostly not members): both answers are exercised.
    checks: list[tuple[uuid.UUID, uuid.UUID]]


async def seed(url: str, config: UnaryConfig) -> Seed:
    rng = random.Random(42)
    orgs = [uuid.uuid4() for _ in range(config.organizations)]
    users = [uuid.uuid4() for _ in range(config.users)]
    members = [
        (org, user)
        for user in users
        for org in rng.sample(orgs, min(config.memberships_per_user, len(orgs)))
    ]
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(Organization),
                [
                    {
                        "id": org,
                        "platform": Platform.github,
                        "name": f"org-{i}",
                        "external_id": 1_000_000 + i,
                        "installation_id": 2_000_000 + i,
                        "status": OrganizationStatus.active,
                        "avatar_url": f"https://avatars.example/{i}",
                    }
                    for i, org in enumerate(orgs)
                ],
            )
            await conn.execute(
                insert(User),
                [{"id": u, "username": f"user-{i}"} for i, u in enumerate(users)],
            )
            await conn.execute(
                insert(UserOrganization),
                [{"organization_id": org, "user_id": user} for org, user in members],
            )
            await conn.exec_driver_sql("ANALYZE")
    finally:
        await engine.dispose()
    randoms = [(rng.choice(orgs), rng.choice(users)) for _ in range(len(members))]
    checks = [pair for both in zip(members, randoms, strict=True) for pair in both]
    return Seed(orgs, checks)


def _channel(target: str, index: int) -> grpc.aio.Channel:
    # Channels with equal arguments share one connection (gRPC's global subchannel pool);
    # a local pool per channel gives each its own TCP connection and HTTP/2 stream limits.
    return bench_channel(
        target, options=[("grpc.use_local_subchannel_pool", 1), ("polar.bench.channel", index)]
    )


async def grpc_runs(
    label: str,
    target: str,
    data: Seed,
    config: UnaryConfig,
    *,
    rpcs: Sequence[str],
    channel_counts: Sequence[int],
    probes: Mapping[str, Probe],
) -> list[LoadResult]:
    get_requests = [pb.GetOrganizationRequest(id=str(o)) for o in data.organizations]
    check_requests = [
        pb.CheckMembershipRequest(organization_id=str(o), user_id=str(u)) for o, u in data.checks
    ]
    results = []
    for channels in channel_counts:
        pool = [_channel(target, i) for i in range(channels)]
        try:
            for ch in pool:
                await ch.channel_ready()
            stubs = [pb_grpc.OrganizationServiceStub(c) for c in pool]
            calls = _callers(stubs, get_requests, check_requests)
            for rpc in rpcs:
                results.append(
                    await closed_loop(
                        f"{label} {rpc}, {channels} channel{'s' if channels > 1 else ''}",
                        calls[rpc],
                        concurrency=config.concurrency,
                        warmup=config.warmup,
                        duration=config.duration,
                        probes=probes,
                    )
                )
        finally:
            for ch in pool:
                await ch.close()
    return results


def _callers(
    stubs: Sequence[pb_grpc.OrganizationServiceAsyncStub],
    get_requests: Sequence[pb.GetOrganizationRequest],
    check_requests: Sequence[pb.CheckMembershipRequest],
) -> dict[str, Callable[[int], Awaitable[object]]]:
    """One call per RPC; caller `i` always uses channel `i mod len(stubs)`."""

    async def get(i: int) -> object:
        stub = stubs[i % len(stubs)]
        return await stub.GetOrganization(random.choice(get_requests), timeout=10)

    async def check(i: int) -> object:
        stub = stubs[i % len(stubs)]
        return await stub.CheckMembership(random.choice(check_requests), timeout=10)

    return {"GetOrganization": get, "CheckMembership": check}


async def floor_runs(
    url: str, data: Seed, config: UnaryConfig, probes: Mapping[str, Probe]
) -> list[LoadResult]:
    pool: Any = await asyncpg.create_pool(
        asyncpg_dsn(url), min_size=config.floor_pool, max_size=config.floor_pool
    )
    try:

        async def get(_: int) -> object:
            return await pool.fetchrow(GET_SQL, random.choice(data.organizations))

        async def check(_: int) -> object:
            return await pool.fetchval(MEMBER_SQL, *random.choice(data.checks))

        return [
            await closed_loop(
                f"floor {name}, asyncpg pool of {config.floor_pool}",
                call,
                concurrency=config.concurrency,
                warmup=config.warmup,
                duration=config.duration,
                probes=probes,
            )
            for name, call in (("GetOrganization", get), ("CheckMembership", check))
        ]
    finally:
        await pool.close()


async def run(server_url: str, nats_url: str, config: UnaryConfig) -> dict[str, Any]:
    rpcs = ("GetOrganization", "CheckMembership")
    async with bench_database(server_url) as url, bench_prefix(nats_url) as prefix:
        data = await seed(url, config)
        probe_conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            pg = PostgresProbes(probe_conn)
            probes: dict[str, Probe] = {
                "bench_cpu": pid_cpu(os.getpid()),
                "pg_cpu": pg.cpu,
                "pg_sessions": pg.sessions,
            }
            async with running_service(url, nats_url, prefix, args=ECHO_ARGS) as echo:
                ceiling = await grpc_runs(
                    "echo",
                    echo.target,
                    data,
                    config,
                    rpcs=rpcs[:1],
                    channel_counts=[1],
                    probes={**probes, "server_cpu": pid_cpu(echo.pid)},
                )
            async with running_service(url, nats_url, prefix) as service:
                served = await grpc_runs(
                    "grpc",
                    service.target,
                    data,
                    config,
                    rpcs=rpcs,
                    channel_counts=sorted({1, config.channels}),
                    probes={**probes, "server_cpu": pid_cpu(service.pid)},
                )
            floor = await floor_runs(url, data, config, probes)
        finally:
            await probe_conn.close()

    floor_rps = {rpc: next(r.rps for r in floor if rpc in r.name) for rpc in rpcs}
    ratios = {
        r.name: round(r.rps / floor_rps[rpc], 3)
        for r in [*ceiling, *served]
        for rpc in rpcs
        if rpc in r.name and floor_rps[rpc]
    }
    results = [*served, *floor, *ceiling]
    report(config, results, ratios)
    out = {
        "config": asdict(config),
        "runs": [r.as_dict() for r in results],
        "ratio_vs_floor": ratios,
        "target_ratio": TARGET_RATIO,
    }
    print(f"   results: {write_results('unary', out)}")
    return out


def report(config: UnaryConfig, results: Sequence[LoadResult], ratios: Mapping[str, float]) -> None:
    print(
        f"\n== Unary RPC: {config.concurrency} concurrent callers, {config.warmup:g}s warm-up + "
        f"{config.duration:g}s measured, {config.organizations} orgs, {config.users} users"
    )
    headers = ["run", "req/s", "p50 ms", "p99 ms", "errors", "vs floor"]
    headers += ["CPU ms/req: bench", "server", "pg", "pg conns opened"]
    rows = [
        [
            r.name,
            r.rps,
            r.as_dict()["p50_ms"],
            r.as_dict()["p99_ms"],
            r.errors,
            f"{ratios[r.name]:.0%}" if r.name in ratios else "(floor)",
            *(_ms(r.per_request(p, 1000)) for p in ("bench_cpu", "server_cpu", "pg_cpu")),
            round(r.deltas.get("pg_sessions", 0)),
        ]
        for r in results
    ]
    print(table(headers, rows))
    print(
        "   floor = the same SQL straight through asyncpg (pool of "
        f"{config.floor_pool}) from this process. echo = a\n"
        "   gRPC server answering from memory (no database, no interceptors): the ceiling of\n"
        "   any Python gRPC service with this client. CPU ms/req: this process (the load\n"
        "   generator), the server process, the PostgreSQL backends. All share "
        f"{CPUS} CPUs: the\n"
        "   load generator and the service compete, and the floor also gets the CPU the\n"
        "   service would use."
    )
    errors = [f"   {r.name}: {r.first_error}" for r in results if r.first_error]
    if errors:
        print("\n".join(["   first errors:", *errors]))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
