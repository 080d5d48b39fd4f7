"""Idle memory of `python -m polar_organization`: resident set once SERVING and idle."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

from bench.common import bench_database, bench_prefix, running_service, table, write_results

TARGET_MB = 100.0
VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    # glibc gives each thread that mallocs its own arena (up to 8 x cores); gRPC starts threads.
    "MALLOC_ARENA_MAX=2": {"MALLOC_ARENA_MAX": "2"},
}


@dataclass(frozen=True)
class MemoryConfig:
    idle_seconds: float = 3.0


def _mb(status: dict[str, str], key: str) -> float:
    return round(int(status[key].split()[0]) / 1024, 1)  # "123456 kB"


async def run(server_url: str, nats_url: str, config: MemoryConfig) -> dict[str, Any]:
    results: dict[str, dict[str, float]] = {}
    async with bench_database(server_url) as url, bench_prefix(nats_url) as prefix:
        for name, env in VARIANTS.items():
            async with running_service(url, nats_url, prefix, env) as service:
                await asyncio.sleep(config.idle_seconds)
                status = service.status()
            results[name] = {
                "rss_mb": _mb(status, "VmRSS"),
                "rss_anon_mb": _mb(status, "RssAnon"),
                "rss_file_mb": _mb(status, "RssFile"),
                "peak_rss_mb": _mb(status, "VmHWM"),
                "threads": int(status["Threads"]),
            }
    print(f"\n== Idle memory: SERVING + {config.idle_seconds:g}s idle, /proc/<pid>/status")
    print(
        table(
            ["variant", "VmRSS MB", "anon MB", "file MB", "peak MB", "threads"],
            [
                [n, r["rss_mb"], r["rss_anon_mb"], r["rss_file_mb"], r["peak_rss_mb"], r["threads"]]
                for n, r in results.items()
            ],
        )
    )
    rss = results["default"]["rss_mb"]
    print(
        f"   target: VmRSS < {TARGET_MB:g} MB -> {'met' if rss < TARGET_MB else 'NOT met'}."
        " file = shared libraries and code mapped from disk (shared between processes)."
    )
    out = {"config": asdict(config), "variants": results, "target_mb": TARGET_MB}
    print(f"   results: {write_results('memory', out)}")
    return out
