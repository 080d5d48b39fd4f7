"""What tracing costs (issue 12): webhook ingress and end-to-end throughput with tracing off,
sampling 1% and sampling 100%, in one run; off is the baseline.

    uv run python -m bench.tracing [--deliveries 4000] [--duration 5] [--rounds 2]

Each mode runs bench.gateway's `ingress` (32 senders POSTing signed issues.opened deliveries
to `python -m polar_gateway` alone, `--duration` seconds) and `end_to_end` (`--deliveries`
distinct deliveries through the gateway, JetStream and the repository service's consumer
into PostgreSQL, with the organization service and every outbox relay running), in fresh
processes whose environment says the mode:

- off: no OTEL_EXPORTER_OTLP_ENDPOINT and no POLAR_TRACE_DIR (nothing instrumented);
- 1%: OTEL_TRACES_SAMPLER=parentbased_traceidratio, OTEL_TRACES_SAMPLER_ARG=0.01;
- 100%: OTEL_TRACES_SAMPLER=parentbased_always_on.

The traced modes export every sampled span to JSON-lines files (POLAR_TRACE_DIR in a
temporary folder): the spans are serialized and written, as an exporter would. Modes are
interleaved round after round (off, 1%, 100%, off, ...) so that a noisy neighbour hits them
alike, and each mode's median over the rounds is reported. Targets: 1% costs <= 5% of the
baseline's throughput, 100% <= 25%.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
from collections.abc import Sequence
from typing import Any

from polar_dev.infra import infra

from bench.common import table, write_results
from bench.gateway import Config, end_to_end, ingress

MODES: dict[str, dict[str, str]] = {
    "off": {},
    "1%": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"},
    "100%": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
}
TARGETS = {"1%": 0.05, "100%": 0.25}
TRACING_ENV = ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "POLAR_TRACE_DIR")


async def one_mode(
    mode: str, server_url: str, nats_url: str, config: Config, deliveries: int, folder: str
) -> dict[str, float]:
    # bench.gateway's processes inherit this process's environment.
    for key in (*TRACING_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SDK_DISABLED"):
        os.environ.pop(key, None)
    os.environ.update(MODES[mode])
    if MODES[mode]:
        os.environ["POLAR_TRACE_DIR"] = os.path.join(folder, mode.rstrip("%"))
    try:
        alone = await ingress(nats_url, config)
        through = await end_to_end(server_url, nats_url, config, deliveries)
    finally:
        for key in TRACING_ENV:
            os.environ.pop(key, None)
    return {
        "ingress_per_second": alone["gateway"]["rps"],
        "ingress_under_load_per_second": through["ingress_per_second"],
        "end_to_end_per_second": through["end_to_end_per_second"],
        "cpu_ms_per_delivery_servers": through["cpu_ms_per_delivery_servers"],
    }


async def run(deliveries: int, duration: float, rounds: int) -> dict[str, Any]:
    config = Config(warmup=1.0, duration=duration)
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with infra(ephemeral=True) as servers, tempfile.TemporaryDirectory() as folder:
        for round_ in range(rounds):
            for mode in MODES:
                print(f"\n=== round {round_ + 1}/{rounds}, tracing {mode} ===", flush=True)
                runs[mode].append(
                    await one_mode(
                        mode, servers.database_url, servers.nats_url, config, deliveries, folder
                    )
                )
    medians = {
        mode: {key: statistics.median(r[key] for r in results) for key in results[0]}
        for mode, results in runs.items()
    }
    base = medians["off"]
    rows = []
    for mode, m in medians.items():
        cost = {
            key: 1 - m[key] / base[key] if base[key] else 0.0
            for key in ("ingress_per_second", "end_to_end_per_second")
        }
        m["ingress_cost"] = round(cost["ingress_per_second"], 3)
        m["end_to_end_cost"] = round(cost["end_to_end_per_second"], 3)
        target = TARGETS.get(mode)
        verdict = "-"
        if target is not None:
            worst = max(cost.values())
            verdict = f"<= {target:.0%}: {'met' if worst <= target else 'NOT met'}"
        rows.append(
            [
                mode,
                round(m["ingress_per_second"], 1),
                f"{cost['ingress_per_second']:+.1%}" if target else "-",
                round(m["end_to_end_per_second"], 1),
                f"{cost['end_to_end_per_second']:+.1%}" if target else "-",
                m["cpu_ms_per_delivery_servers"],
                verdict,
            ]
        )
    print(f"\ntracing cost: median of {rounds} rounds; cost = throughput lost vs off")
    print(
        table(
            [
                "tracing",
                "ingress/s",
                "cost",
                "POST to row /s",
                "cost",
                "server CPU ms/delivery",
                "target",
            ],
            rows,
        )
    )
    return {"deliveries": deliveries, "rounds": runs, "medians": medians}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__)
    parser.add_argument("--deliveries", type=int, default=4000, help="end to end, per mode")
    parser.add_argument("--duration", type=float, default=5.0, help="ingress, seconds per mode")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.deliveries, args.duration, args.rounds))
    write_results("tracing", result)


if __name__ == "__main__":
    main()
