"""Benchmarks of the organization service: `uv run python -m bench.organization`.

PostgreSQL and NATS: POLAR_DATABASE_URL / POLAR_NATS_URL when set (a server URL: each
benchmark creates its own `polar_bench_<hex>` database there), else embedded ones started by
polar_dev. Each benchmark uses its own database and NATS prefix and removes them at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from polar_dev.infra import infra
from polar_kit.logging import configure_logging

from bench import memory, outbox, unary
from bench.common import CPUS, write_results

BENCHMARKS = ("unary", "outbox", "memory")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.organization", description=__doc__)
    parser.add_argument(
        "--only", choices=BENCHMARKS, action="append", help="run only this one (repeatable)"
    )
    parser.add_argument("--duration", type=float, default=8.0, help="unary: measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="unary: warm-up seconds")
    parser.add_argument("--concurrency", type=int, default=32, help="unary: concurrent callers")
    parser.add_argument("--channels", type=int, default=4, help="unary: channel pool size")
    parser.add_argument("--rate", type=float, default=500.0, help="outbox: events/s, steady")
    parser.add_argument("--seconds", type=float, default=5.0, help="outbox: steady seconds")
    parser.add_argument("--burst", type=int, default=5000, help="outbox: burst events")
    return parser.parse_args(argv)


async def run_all(args: argparse.Namespace, database_url: str, nats_url: str) -> dict[str, Any]:
    selected = args.only or BENCHMARKS
    results: dict[str, Any] = {}
    if "unary" in selected:
        config = unary.UnaryConfig(
            concurrency=args.concurrency,
            channels=args.channels,
            warmup=args.warmup,
            duration=args.duration,
        )
        results["unary"] = await unary.run(database_url, nats_url, config)
    if "outbox" in selected:
        box = outbox.OutboxConfig(rate=args.rate, seconds=args.seconds, burst_events=args.burst)
        results["outbox"] = await outbox.run(database_url, nats_url, box)
    if "memory" in selected:
        results["memory"] = await memory.run(database_url, nats_url, memory.MemoryConfig())
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging("WARNING", json=False)  # the libraries' info lines would break the tables
    started = time.monotonic()
    with infra(ephemeral=True) as servers:
        where = "embedded (fsync off)" if servers.embedded_postgres else servers.database_url
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"organization benchmarks: {CPUS} CPUs, load average {load} before start\n"
            f"PostgreSQL: {where}\nNATS: {servers.nats_url}"
        )
        results = asyncio.run(run_all(args, servers.database_url, servers.nats_url))
    summary = {"seconds": round(time.monotonic() - started, 1), **results}
    path = write_results("organization", summary)
    print(f"\nall results: {path} ({summary['seconds']}s)")


if __name__ == "__main__":
    main()
