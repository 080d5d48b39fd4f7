"""Webhook consumption: `issues.opened` deliveries taken from JetStream and turned into issue
rows plus outbox events, per second, by one replica and then by two.

`uv run python -m bench.webhook_consumption [--messages 20000] [--replicas 1 2]`

N deliveries (the recorded issues.opened payload, 13.5 kB, each with its own issue id and
number, all in one repository) are published to the GITHUB_WEBHOOKS stream first; then the
replicas (separate OS processes) consume them and the clock runs until N issue rows are in
PostgreSQL. Each run has its own NATS prefix (so its own streams) and repository.

Variants:
- consumer: `python -m bench.webhook_consumption --worker`, the repository service's webhook
  consumer alone (polar_repository.consumers, batch mode) in its own process. The replicas
  connect and create the durable consumer first, then all get "go" on stdin at once: the
  clock starts at "go".
- service: `python -m polar_repository` as deployed (gRPC server, both consumers and the
  outbox relay, which also publishes the N events to JetStream while consuming). The clock
  starts once every replica is SERVING and counts only the rows written from then on.

Reported: messages/s, scaling with two replicas, CPU cores used by the replicas and by the
PostgreSQL backends of the bench database, and CPU ms per message.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg
import nats
from polar_db.engine import asyncpg_dsn
from polar_dev.infra import infra
from polar_dev.paths import github_fixtures_dir
from polar_kit.logging import configure_logging
from polar_kit.nats import ensure_streams
from polar_kit.settings import ServiceSettings

from bench.common import (
    CPUS,
    HOST,
    RepositoryProcess,
    bench_database,
    bench_prefix,
    pid_cpu,
    postgres_cpu,
    table,
    write_results,
)

TARGET_ONE = 1_000.0  # messages/s with one replica


@dataclass(frozen=True)
class ConsumptionConfig:
    messages: int = 20_000
    replicas: tuple[int, ...] = (1, 2)
    variants: tuple[str, ...] = ("consumer", "service")
    timeout: float = 300.0


# --- the replicas ------------------------------------------------------------------------------


async def worker() -> None:
    """One replica of the webhook consumer alone: ready -> waits for "go" on stdin -> runs
    until SIGTERM."""
    from polar_db.engine import create_engine, create_sessionmaker
    from polar_kit.nats import connect
    from polar_repository.consumers import consumers
    from polar_repository.settings import RepositorySettings

    settings = RepositorySettings()
    configure_logging("WARNING", json=False)
    engine = create_engine(settings.database_url, owner="repository", role=settings.database_role)
    nc = await connect(settings, name="bench-webhook-worker")
    js = nc.jetstream()
    [webhooks, _] = consumers(settings, js, create_sessionmaker(engine))
    sub = await webhooks.setup()
    await sub.unsubscribe()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await webhooks.run(stop)
    await nc.close()
    await engine.dispose()


class Replica:
    """A replica process: the bench worker, or the repository service."""

    def __init__(self, variant: str, env: dict[str, str]) -> None:
        self.variant, self.env = variant, env
        self.process: asyncio.subprocess.Process | None = None
        self.service: RepositoryProcess | None = None

    @property
    def pid(self) -> int:
        if self.service is not None:
            return self.service.pid
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        if self.variant == "service":
            self.service = RepositoryProcess(
                self.env["POLAR_DATABASE_URL"],
                self.env["POLAR_NATS_URL"],
                self.env["POLAR_NATS_PREFIX"],
            )
            await self.service.start()
            return
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.webhook_consumption",
            "--worker",
            env={**os.environ, **self.env},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), 60)
        if line.strip() != b"ready":
            raise RuntimeError(f"worker did not start: {line!r}")

    def go(self) -> None:
        if self.process is not None:
            assert self.process.stdin is not None
            self.process.stdin.write(b"go\n")

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.stop()
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


# --- one run -------------------------------------------------------------------------------


def payloads(count: int, base: int, repository_id: int) -> list[bytes]:
    template = json.loads(
        (github_fixtures_dir() / "webhooks/issues/opened.payload.json").read_text()
    )
    template["repository"]["id"] = repository_id
    out = []
    for i in range(count):
        payload = copy.deepcopy(template)
        payload["issue"] |= {"id": base + i, "number": i + 1, "title": f"Issue {i + 1}"}
        out.append(json.dumps(payload).encode())
    return out


async def seed(url: str, n: int) -> tuple[uuid.UUID, int]:
    """An organization and a repository (GitHub id `n`); returns (repository id, n)."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        org, repo = uuid.uuid4(), uuid.uuid4()
        await conn.execute(
            "INSERT INTO organization.organizations (id, platform, name, external_id, is_personal,"
            " installation_id, status) VALUES ($1, 'github', $2, $3, false, $3, 'active')",
            org,
            f"bench-{n}",
            n,
        )
        await conn.execute(
            "INSERT INTO repository.repositories (id, platform, external_id, organization_id,"
            " name, topics, is_private) VALUES ($1, 'github', $2, $3, 'hello', '[]', false)",
            repo,
            n,
            org,
        )
        return repo, n
    finally:
        await conn.close()


async def publish(nats_url: str, prefix: str, bodies: Sequence[bytes]) -> float:
    """Publish every body (awaiting JetStream's acks); returns the seconds it took."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_streams(js, ServiceSettings(nats_url=nats_url, nats_prefix=prefix))
        start = time.perf_counter()
        subject = f"{prefix}github.webhook.issues.opened"
        for chunk in range(0, len(bodies), 500):
            await asyncio.gather(
                *(
                    js.publish(subject, body, headers={"Nats-Msg-Id": uuid.uuid4().hex})
                    for body in bodies[chunk : chunk + 500]
                )
            )
        return time.perf_counter() - start
    finally:
        await nc.close()


async def run_one(
    url: str, nats_url: str, variant: str, replicas: int, config: ConsumptionConfig, n: int
) -> dict[str, Any]:
    repository_id, external_id = await seed(url, n)
    bodies = payloads(config.messages, n * 1_000_000, external_id)
    async with bench_prefix(nats_url) as prefix:
        published = await publish(nats_url, prefix, bodies)
        del bodies
        env = {
            "POLAR_DATABASE_URL": url,
            "POLAR_NATS_URL": nats_url,
            "POLAR_NATS_PREFIX": prefix,
            "POLAR_LOG_LEVEL": "WARNING",
            "POLAR_GITHUB_API_URL": f"http://{HOST}:9",
        }
        group = [Replica(variant, env) for _ in range(replicas)]
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await asyncio.gather(*(r.start() for r in group))
            replica_cpu, pg_cpu = [pid_cpu(r.pid) for r in group], postgres_cpu(url)
            cpu_before = {
                "replicas": sum([await p() for p in replica_cpu]),
                "postgres": await pg_cpu(),
            }
            for r in group:
                r.go()
            start = time.perf_counter()
            count = "SELECT count(*) FROM repository.issues WHERE repository_id = $1"
            already = int(await conn.fetchval(count, repository_id))
            done = already
            while done < config.messages:
                if time.perf_counter() - start > config.timeout:
                    raise RuntimeError(f"{variant} x{replicas}: {done} rows after the timeout")
                await asyncio.sleep(0.02)
                done = int(await conn.fetchval(count, repository_id))
            seconds = time.perf_counter() - start
            cpu = {
                "replicas": sum([await p() for p in replica_cpu]) - cpu_before["replicas"],
                "postgres": await pg_cpu() - cpu_before["postgres"],
            }
            events = await conn.fetchval(
                "SELECT count(*) FROM repository.outbox_events"
                " WHERE subject = 'polar.repository.v1.issue_created'"
            )
        finally:
            await conn.close()
            await asyncio.gather(*(r.stop() for r in group))
    measured = config.messages - already
    if measured <= 0:
        raise RuntimeError(
            f"{variant} x{replicas}: every message was consumed before the measurement began;"
            " use more --messages"
        )
    return {
        "variant": variant,
        "replicas": replicas,
        "messages": measured,
        "seconds": round(seconds, 3),
        "messages_per_s": round(measured / seconds, 1),
        "publish_per_s": round(config.messages / published, 1),
        "issue_created_events": events,
        "cpu_cores": {k: round(v / seconds, 2) for k, v in cpu.items()},
        "cpu_ms_per_message": {k: round(v * 1000 / measured, 3) for k, v in cpu.items()},
    }


async def run(server_url: str, nats_url: str, config: ConsumptionConfig) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    async with bench_database(server_url) as url:
        n = 1
        for variant in config.variants:
            for replicas in config.replicas:
                runs.append(await run_one(url, nats_url, variant, replicas, config, n))
                n += 1
                # Only the bench's own events count per run: start each from an empty outbox.
                conn = await asyncpg.connect(asyncpg_dsn(url))
                try:
                    await conn.execute("TRUNCATE repository.outbox_events")
                finally:
                    await conn.close()
    print(
        f"\n== Webhook consumption: {config.messages:,} issues.opened from JetStream to rows"
        " + outbox events"
    )
    rows = []
    for r in runs:
        single = next(
            x["messages_per_s"]
            for x in runs
            if x["variant"] == r["variant"] and x["replicas"] == min(config.replicas)
        )
        r["scaling"] = round(r["messages_per_s"] / single, 2)
        rows.append(
            [
                r["variant"],
                r["replicas"],
                r["messages_per_s"],
                f"x{r['scaling']:.2f}",
                r["cpu_cores"]["replicas"],
                r["cpu_cores"]["postgres"],
                r["cpu_ms_per_message"]["replicas"],
                r["cpu_ms_per_message"]["postgres"],
            ]
        )
    print(
        table(
            [
                "variant",
                "replicas",
                "msgs/s",
                "scaling",
                "cores: replicas",
                "cores: postgres",
                "ms/msg: replicas",
                "ms/msg: postgres",
            ],
            rows,
        )
    )
    for variant in config.variants:
        one = next(r for r in runs if r["variant"] == variant and r["replicas"] == 1)
        verdict = "met" if one["messages_per_s"] >= TARGET_ONE else "NOT met"
        print(f"   {variant}: one replica >= {TARGET_ONE:,.0f}/s -> {verdict}")
    out = {"config": asdict(config), "runs": runs, "target_one_replica": TARGET_ONE}
    print(f"   results: {write_results('webhook_consumption', out)}")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook_consumption")
    parser.add_argument("--messages", type=int, default=ConsumptionConfig.messages)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--variant", choices=("consumer", "service"), action="append", help="default: both"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        asyncio.run(worker())
        return
    configure_logging("WARNING", json=False)
    config = ConsumptionConfig(
        messages=args.messages,
        replicas=tuple(args.replicas),
        variants=tuple(args.variant or ConsumptionConfig.variants),
    )
    with infra(ephemeral=True) as servers:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"webhook consumption: {CPUS} CPUs, load average {load} before start\n"
            f"PostgreSQL: {servers.database_url}\nNATS: {servers.nats_url}"
        )
        asyncio.run(run(servers.database_url, servers.nats_url, config))


if __name__ == "__main__":
    main()
