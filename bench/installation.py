"""Installation to repositories: from an `installation.created` delivery accepted by JetStream
to the installation's repository rows in PostgreSQL (issue 15).

`uv run python -m bench.installation [--installations 200] [--baseline-root DIR]`

The organization and repository services run as deployed (`python -m polar_organization`,
`python -m polar_repository`, each its own OS process), both consuming the delivery: the
organization service creates the organization, the repository service files the
repositories. Each installation (the recorded installation.created payload, renumbered: a
new account, installation and 3 repositories) is published to the GITHUB_WEBHOOKS stream,
one at a time, and the clock runs from just before the publish until its repository rows
are visible (polled every 2 ms on one connection: up to ~2 ms of detection included).
Reported: p50/p99/max latency; "pickup", from the publish to the start of the repository
service's transaction (its now(), as stored in created_at: the rest is the transaction and
the poll); and the repository webhook consumer's retries (its Prometheus counter: a retry
means a delivery waited for another service).

--baseline-root DIR: the same run first against the services and migrations of another
source tree (e.g. `git worktree add /tmp/base <commit>`), imported from there through
PYTHONPATH, in the same run and on the same servers.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
from polar_db.engine import asyncpg_dsn
from polar_dev.infra import free_port, infra
from polar_dev.paths import github_fixtures_dir
from polar_kit.logging import configure_logging
from polar_kit.nats import ensure_streams
from polar_kit.settings import ServiceSettings

from bench.common import (
    HOST,
    RepositoryProcess,
    ServiceProcess,
    bench_database,
    bench_prefix,
    latency_summary,
    table,
    write_results,
)

TARGET_P99_MS = 200.0
MONOLITH_MS = 150.0  # the figure for the monolith this replaces
REPOSITORIES = 3
RETRIED = re.compile(
    r'polar_consumer_messages_total\{consumer="repository-webhooks",outcome="retried"\} (\S+)'
)


@dataclass(frozen=True)
class Config:
    installations: int = 200
    timeout: float = 10.0  # per installation


def payloads(n: int) -> list[dict[str, Any]]:
    recorded = json.loads(
        (github_fixtures_dir() / "webhooks" / "installation" / "created.payload.json").read_text()
    )
    out = []
    base = 800_000_000
    for i in range(n):
        payload = copy.deepcopy(recorded)
        account = base + i * 10
        payload["installation"]["id"] = account + 1
        payload["installation"]["account"] |= {"id": account, "login": f"bench-{account}"}
        template = payload["repositories"][0]
        payload["repositories"] = [
            template | {"id": account + 2 + r, "name": f"r{r}", "full_name": f"bench/r{r}"}
            for r in range(REPOSITORIES)
        ]
        out.append(payload)
    return out


def _pythonpath(root: Path | None) -> dict[str, str]:
    if root is None:
        return {}
    sources = [
        root / part / "src"
        for part in (
            "services/organization",
            "services/repository",
            "libs/polar_db",
            "libs/polar_kit",
            "libs/polar_proto",
            "libs/polar_events",
        )
        if (root / part / "src").is_dir()
    ]
    return {"PYTHONPATH": os.pathsep.join(str(s) for s in sources)}


async def _migrate(url: str, root: Path | None) -> None:
    env = {**os.environ, **_pythonpath(root), "POLAR_DATABASE_URL": url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "polar_db.migrate",
        "upgrade",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"migration failed:\n{err.decode()[-2000:]}")


async def _retries(metrics_port: int) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://{HOST}:{metrics_port}/metrics")).text
    match = RETRIED.search(text)
    return float(match.group(1)) if match else 0.0


async def measure(
    label: str, server_url: str, nats_url: str, config: Config, root: Path | None
) -> dict[str, Any]:
    async with bench_database(server_url, migrate=False) as url, bench_prefix(nats_url) as prefix:
        await _migrate(url, root)
        settings = ServiceSettings(database_url=url, nats_url=nats_url, nats_prefix=prefix)
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        await ensure_streams(js, settings)
        metrics_port = free_port()
        env = {**_pythonpath(root), "POLAR_LOG_LEVEL": "WARNING"}
        organization = ServiceProcess(url, nats_url, prefix, env)
        repository = RepositoryProcess(
            url, nats_url, prefix, env | {"POLAR_METRICS_PORT": str(metrics_port)}
        )
        await organization.start()
        await repository.start()
        conn = await asyncpg.connect(asyncpg_dsn(url))
        # The new layout's tables are in `repository`, the old one's in `public`.
        await conn.execute("SET search_path TO repository, public")
        latencies: list[float] = []
        pickups: list[float] = []
        try:
            for payload in payloads(config.installations):
                ids = [r["id"] for r in payload["repositories"]]
                started = time.perf_counter()
                published_at = time.time()
                await js.publish(
                    f"{prefix}github.webhook.installation.created",
                    json.dumps(payload).encode(),
                    headers={"Nats-Msg-Id": str(uuid.uuid4())},
                )
                deadline = started + config.timeout
                while await conn.fetchval(
                    "SELECT count(*) FROM repositories WHERE external_id = ANY($1)", ids
                ) < len(ids):
                    if time.perf_counter() > deadline:
                        raise RuntimeError(f"{label}: repositories not written in time")
                    await asyncio.sleep(0.002)
                latencies.append((time.perf_counter() - started) * 1000)
                # When the repository service's transaction began (its now()), after publish.
                began = await conn.fetchval(
                    "SELECT extract(epoch FROM min(created_at)) FROM repositories "
                    "WHERE external_id = ANY($1)",
                    ids,
                )
                pickups.append((float(began) - published_at) * 1000)
            retries = await _retries(metrics_port)
        finally:
            await conn.close()
            await repository.stop()
            await organization.stop()
            await nc.close()
    return {
        "label": label,
        "count": len(latencies),
        **latency_summary(latencies),
        "retries": retries,
        "pickup": latency_summary(pickups),
    }


async def run(config: Config, baseline_root: Path | None) -> list[dict[str, Any]]:
    results = []
    with infra(ephemeral=True) as servers:
        if baseline_root is not None:
            results.append(
                await measure(
                    "baseline", servers.database_url, servers.nats_url, config, baseline_root
                )
            )
        results.append(
            await measure("this tree", servers.database_url, servers.nats_url, config, None)
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.installation")
    parser.add_argument("--installations", type=int, default=Config.installations)
    parser.add_argument("--baseline-root", type=Path, help="another source tree, measured first")
    args = parser.parse_args()
    configure_logging("WARNING", json=False)
    config = Config(installations=args.installations)
    results = asyncio.run(run(config, args.baseline_root))
    print(
        table(
            [
                "run",
                "installations",
                "p50 ms",
                "p99 ms",
                "max ms",
                "pickup p50 ms",
                "pickup p99 ms",
                "consumer retries",
            ],
            [
                [
                    r["label"],
                    r["count"],
                    r["p50_ms"],
                    r["p99_ms"],
                    r["max_ms"],
                    r["pickup"]["p50_ms"],
                    r["pickup"]["p99_ms"],
                    r["retries"],
                ]
                for r in results
            ],
        )
    )
    print(f"target: p99 <= {TARGET_P99_MS:.0f} ms, no retry; the monolith: {MONOLITH_MS:.0f} ms")
    write_results("installation", {"config": config.__dict__, "results": results})


if __name__ == "__main__":
    main()
