"""Every benchmark suite still runs against today's schemas and services.

The suites are not tests and assert on no figure; they start the real processes and seed
the real tables, so a change elsewhere can break them silently (issue 15's schemas broke
five of them). Here each runs once with a load too small to measure anything: only that it
finishes and writes its results is checked. (`memory` and `ingress` start nothing the others
do not.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SUITES = {
    "unary": ("organization", "--only", "unary", "--duration", "1", "--warmup", "0"),
    "outbox": ("organization", "--only", "outbox", "--seconds", "1", "--burst", "200"),
    "list_issues": (
        "list_issues",
        *("--issues", "300", "--other-repositories", "1", "--walks", "2", "--duration", "1"),
    ),
    "repository_upsert": (
        "repository_upsert",
        *("--issues", "500", "--repositories", "100", "--rounds", "1"),
    ),
    # The consumer variant waits for "go": as deployed (`service`), a replica can consume
    # so few messages before its clock starts, and the suite refuses to report nothing.
    "webhook_consumption": (
        "webhook_consumption",
        *("--messages", "200", "--replicas", "1", "--variant", "consumer"),
    ),
    "installation": ("installation", "--installations", "3"),
    "organizations": ("gateway", "--only", "organizations", "--duration", "1", "--warmup", "0"),
    "end_to_end": ("gateway", "--only", "end_to_end", "--deliveries", "200"),
    "tracing_hooks": ("tracing", "--hooks", "--deliveries", "200"),
    "tracing": ("tracing", "--deliveries", "200", "--duration", "1", "--rounds", "1"),
    "tracing_fixed_rate": ("tracing", "--rate", "50", "--duration", "1", "--rounds", "1"),
    "stream": ("stream", "--clients", "20", "--rate", "10", "--duration", "2", "--warmup", "1"),
}


@pytest.mark.parametrize("suite", SUITES)
def test_benchmark_suite_runs(suite: str, tmp_path: Path) -> None:
    module, *args = SUITES[suite]
    env = {**os.environ, "BENCH_RESULTS_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    written = {p.name: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert written, f"bench.{module} wrote no results:\n{done.stdout[-3000:]}"
    if suite == "tracing":  # the spans did reach the stand-in collector, over OTLP
        medians = written["tracing.json"]["medians"]
        assert medians["off"]["spans_per_delivery"] == 0
        assert medians["100%"]["spans_per_delivery"] >= 2  # the gateway's and the relay's
