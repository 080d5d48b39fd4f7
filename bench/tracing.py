"""What tracing costs (issue 12): webhook ingress and end-to-end throughput with tracing off,
sampling 1% and sampling 100%, in one run; off is the baseline.

    uv run python -m bench.tracing [--deliveries 6000] [--duration 5] [--rounds 4]
    uv run python -m bench.tracing --rate 1500 [--duration 6] [--rounds 3]   # fixed rate
    uv run python -m bench.tracing --hooks [--deliveries 3000]               # in process

Each mode runs bench.gateway's `ingress` (32 senders POSTing signed issues.opened deliveries
to `python -m polar_gateway` alone, `--duration` seconds) and `end_to_end` (`--deliveries`
distinct deliveries through the gateway, JetStream and the repository service's consumer
into PostgreSQL, with the organization service and every outbox relay running), in fresh
processes whose environment says the mode:

- off: no OTEL_EXPORTER_OTLP_ENDPOINT and no POLAR_TRACE_DIR (nothing instrumented);
- 1%: OTEL_TRACES_SAMPLER=parentbased_traceidratio, OTEL_TRACES_SAMPLER_ARG=0.01;
- 100%: OTEL_TRACES_SAMPLER=parentbased_always_on.

The traced modes export every sampled span as a deployment does, over OTLP/gRPC (the SDK's
BatchSpanProcessor and polar_kit.otlp's exporter, from OTEL_EXPORTER_OTLP_ENDPOINT) to a
stand-in collector (bench.otlp_sink, its own process, not counted with the servers) that
counts the spans it receives; `--exporter file` writes JSON-lines files instead
(POLAR_TRACE_DIR, what `make dev` uses). Modes are interleaved round after
round (off, 1%, 100%, off, ...) so that a noisy neighbour hits them alike, and each mode's
median over the rounds is reported. Targets: 1% costs <= 5% of the baseline's throughput,
100% <= 25%.

`--rate` measures the gateway alone at a fixed offered rate instead (its CPU per delivery,
the same load in every mode); `--hooks` the hooks' CPU in this process, without servers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from polar_dev.infra import free_port, infra

from bench.common import HOST, bench_prefix, process_cpu, table, write_results
from bench.gateway import (
    Config,
    Process,
    end_to_end,
    gateway_process,
    ingress,
    processes,
    signed_delivery,
    wait_http,
)
from bench.otlp_sink import spans_received

MODES: dict[str, dict[str, str]] = {
    "off": {},
    "1%": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"},
    "100%": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
}
TARGETS = {"1%": 0.05, "100%": 0.25}
TRACING_ENV = (
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "POLAR_TRACE_DIR",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


@contextlib.contextmanager
def mode_environment(mode: str, export_to: str | int) -> Iterator[None]:
    """This process's environment says `mode` for the block (bench.gateway's processes
    inherit it); spans go to the sink's port (OTLP) or a folder of JSON-lines files."""
    for key in (*TRACING_ENV, "OTEL_SDK_DISABLED"):
        os.environ.pop(key, None)
    os.environ.update(MODES[mode])
    if MODES[mode] and isinstance(export_to, int):
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://{HOST}:{export_to}"
    elif MODES[mode]:
        assert isinstance(export_to, str)
        os.environ["POLAR_TRACE_DIR"] = os.path.join(export_to, mode.rstrip("%"))
    try:
        yield
    finally:
        for key in TRACING_ENV:
            os.environ.pop(key, None)


async def one_mode(
    mode: str,
    server_url: str,
    nats_url: str,
    config: Config,
    deliveries: int,
    export_to: str | int,
) -> dict[str, float]:
    """`export_to`: the sink's port (OTLP), or a folder for JSON-lines files."""
    sink = export_to if isinstance(export_to, int) else None
    with mode_environment(mode, export_to):
        alone = await ingress(nats_url, config)
        before = await asyncio.to_thread(spans_received, sink) if sink else Counter[str]()
        through = await end_to_end(server_url, nats_url, config, deliveries)
        # Every process has stopped, and flushed its spans on the way out (at exit).
        after = await asyncio.to_thread(spans_received, sink) if sink else Counter[str]()
        spans = after - before
    cpu = alone["gateway"]["per_request"].get("cpu server") or 0.0
    return {
        "ingress_per_second": alone["gateway"]["rps"],
        "ingress_cpu_ms_per_request": round(cpu * 1000, 3),
        "ingress_under_load_per_second": through["ingress_per_second"],
        "end_to_end_per_second": through["end_to_end_per_second"],
        "cpu_ms_per_delivery_servers": through["cpu_ms_per_delivery_servers"],
        "spans_per_delivery": round(spans.total() / deliveries, 2),
    } | {f"spans: {name}": round(n / deliveries, 3) for name, n in spans.most_common()}


async def run(deliveries: int, duration: float, rounds: int, exporter: str) -> dict[str, Any]:
    config = Config(warmup=1.0, duration=duration)
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    port = free_port()
    sink = Process("otlp-sink", ["-m", "bench.otlp_sink", "--port", str(port)], {})
    with (
        infra(ephemeral=True) as servers,
        tempfile.TemporaryDirectory() as folder,
    ):
        async with processes(*([sink] if exporter == "otlp" else [])):
            if exporter == "otlp":
                await wait_for_sink(port, sink)
            for round_ in range(rounds):
                for mode in MODES:
                    print(f"\n=== round {round_ + 1}/{rounds}, tracing {mode} ===", flush=True)
                    export_to: str | int = port if exporter == "otlp" else folder
                    runs[mode].append(
                        await one_mode(
                            mode,
                            servers.database_url,
                            servers.nats_url,
                            config,
                            deliveries,
                            export_to,
                        )
                    )
    return {
        "deliveries": deliveries,
        "exporter": exporter,
        "rounds": runs,
        "medians": report(runs, rounds),
    }


async def wait_for_sink(port: int, sink: Process) -> None:
    for _ in range(100):
        try:
            await asyncio.to_thread(spans_received, port)
            return
        except grpc.RpcError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the OTLP sink did not start:\n{sink.tail()}")


async def at_fixed_rate(nats_url: str, rate: float, duration: float) -> float:
    """`--rate`: the gateway alone at a fixed offered rate (an open loop, below saturation):
    its CPU µs per delivery. At saturation a mode that runs slower batches more (nats-py
    coalesces its writes), so CPU per request moves with throughput; at one rate it does
    not, and the cost of the mode itself shows."""
    body, headers = signed_delivery()
    connector = aiohttp.TCPConnector(limit=256)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        bench_prefix(nats_url) as prefix,
    ):
        port = free_port()
        gateway = gateway_process(port, nats_url, prefix)
        url = f"http://{HOST}:{port}/api/v2/integrations/github/webhook"

        async def post() -> None:
            async with session.post(url, data=body, headers=headers()) as response:
                await response.read()
                if response.status != 202:
                    raise RuntimeError(f"status {response.status}")

        async def drive(seconds: float) -> int:
            sent: list[asyncio.Task[None]] = []
            start = time.perf_counter()
            while (elapsed := time.perf_counter() - start) < seconds:
                while len(sent) < int(elapsed * rate):
                    sent.append(asyncio.create_task(post()))
                await asyncio.sleep(0.002)
            await asyncio.gather(*sent)
            return len(sent)

        async with processes(gateway):
            await wait_http(session, f"http://{HOST}:{port}/healthz", gateway)
            for _ in range(300):  # NATS connected and the streams exist
                with contextlib.suppress(RuntimeError):
                    await post()
                    break
                await asyncio.sleep(0.1)
            await drive(1.0)  # warm-up
            before = process_cpu(gateway.pid)
            n = await drive(duration)
            return (process_cpu(gateway.pid) - before) / n * 1e6


async def run_fixed_rate(rate: float, duration: float, rounds: int) -> dict[str, Any]:
    runs: dict[str, list[float]] = {mode: [] for mode in MODES}
    port = free_port()
    sink = Process("otlp-sink", ["-m", "bench.otlp_sink", "--port", str(port)], {})
    with infra(ephemeral=True) as servers:
        async with processes(sink):
            await wait_for_sink(port, sink)
            for round_ in range(rounds):
                for mode in MODES:
                    with mode_environment(mode, port):
                        cpu = await at_fixed_rate(servers.nats_url, rate, duration)
                    runs[mode].append(round(cpu, 1))
                    print(f"round {round_ + 1}/{rounds}, tracing {mode}: {cpu:.1f} µs", flush=True)
    medians = {mode: statistics.median(values) for mode, values in runs.items()}
    print(f"\ngateway CPU µs per delivery at {rate:,.0f} deliveries/s (median of {rounds}):")
    for mode, value in medians.items():
        print(f"  {mode:>4}  {value:7.1f}  {value / medians['off'] - 1:+.1%}  {runs[mode]}")
    return {"rate": rate, "rounds": runs, "medians": medians}


def report(runs: dict[str, list[dict[str, float]]], rounds: int) -> dict[str, dict[str, float]]:
    """Prints each mode's median and its cost against off; returns the medians."""
    medians = {
        mode: {
            key: round(statistics.median(r.get(key, 0.0) for r in results), 4)
            for key in dict.fromkeys(k for r in results for k in r)
        }
        for mode, results in runs.items()
    }
    base = medians["off"]
    rows = []
    for mode, m in medians.items():
        # Throughput lost, and CPU added per delivery (what throughput loses on a machine whose
        # CPUs are the bottleneck; steadier than throughput when neighbours are noisy).
        cost = {
            "ingress": 1 - m["ingress_per_second"] / base["ingress_per_second"],
            "ingress cpu": m["ingress_cpu_ms_per_request"] / base["ingress_cpu_ms_per_request"] - 1,
            "end to end": 1 - m["end_to_end_per_second"] / base["end_to_end_per_second"],
            "end to end cpu": m["cpu_ms_per_delivery_servers"] / base["cpu_ms_per_delivery_servers"]
            - 1,
        }
        m.update({f"cost {k}": round(v, 3) for k, v in cost.items()})
        target = TARGETS.get(mode)
        verdict = "-"
        if target is not None:
            worst = max(cost["ingress"], cost["end to end"])
            verdict = f"<= {target:.0%}: {'met' if worst <= target else 'NOT met'}"

        def shown(
            key: str, value: float, cost: dict[str, float] = cost, base: bool = target is None
        ) -> str:
            return str(value) if base else f"{value} ({cost[key]:+.1%})"

        rows.append(
            [
                mode,
                shown("ingress", m["ingress_per_second"]),
                shown("ingress cpu", m["ingress_cpu_ms_per_request"]),
                shown("end to end", m["end_to_end_per_second"]),
                shown("end to end cpu", m["cpu_ms_per_delivery_servers"]),
                m["spans_per_delivery"],
                verdict,
            ]
        )
    print(f"\ntracing cost: median of {rounds} rounds, against off (cost: throughput lost)")
    headers = [
        "tracing",
        "ingress/s (cost)",
        "gateway CPU ms/req",
        "POST to row /s (cost)",
        "servers CPU ms/delivery",
        "spans/delivery",
        "target (throughput)",
    ]
    print(table(headers, rows))
    for mode, m in medians.items():
        names = [(k.removeprefix("spans: "), v) for k, v in m.items() if k.startswith("spans: ")]
        if names:
            print(f"\nspans exported per delivery end to end, tracing {mode} (service, span):")
            print("\n".join(f"  {v:>7}  {name}" for name, v in names))
    return medians


def hooks(deliveries: int, rounds: int = 7) -> dict[str, float]:
    """`--hooks`: CPU per delivery of polar_kit.tracing's hooks alone, in this process, on a
    delivery's path (the gateway's serving and publishing, the repository's batch of 100 and
    outgoing headers, the relay's publish of each row), spans exported to a JSON-lines file
    as in the modes above; median of `rounds`, modes interleaved. No network, no servers:
    steadier than the end-to-end figures on a shared machine, but it is the hooks' share only
    (not the instrumentations', nor the garbage collection it adds)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    from polar_kit import tracing
    from polar_kit.tracing_setup import JsonLinesExporter, NoLoneClientSpans

    subject, route = "github.webhook.issues.opened", "/integrations/github/webhook"

    def path(n: int, batch: int = 100) -> None:
        pending: list[dict[str, str]] = []
        for i in range(n):
            delivery, request_id = f"d-{i}", f"r-{i}"
            with tracing.serving("POST", route, {}, request_id=request_id) as span:
                headers = {"X-GitHub-Delivery": delivery, "X-Request-ID": request_id}
                published = tracing.producing(subject, headers, delivery=delivery)
                tracing.annotate(published, stream_sequence=i)
                tracing.annotate(span, **{"http.response.status_code": 202})
            pending.append(headers)
            if len(pending) == batch:
                with tracing.consuming_batch([(subject, h) for h in pending], consumer="c"):
                    rows = [tracing.outgoing_headers(origin=h) for h in pending]
                for stored in rows:  # each row carries its own delivery's trace
                    with tracing.relaying("polar.repository.v1.issue_created", stored, {}):
                        pass
                pending = []

    # install() sets the process's provider the first time only and says so after: known.
    logging.getLogger("opentelemetry.trace").setLevel(logging.ERROR)
    providers: dict[str, tuple[TracerProvider, float, BatchSpanProcessor]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for mode, env in MODES.items():
            if env:
                ratio = float(env.get("OTEL_TRACES_SAMPLER_ARG", "1"))
                provider = TracerProvider(
                    sampler=ParentBased(NoLoneClientSpans(TraceIdRatioBased(ratio)))
                )
                exporter = JsonLinesExporter(Path(folder) / f"{mode.rstrip('%')}.jsonl")
                processor = BatchSpanProcessor(exporter, max_queue_size=1 << 20)
                provider.add_span_processor(processor)
                # As configure_tracing(): serving() decides new traces and records its spans.
                providers[mode] = provider, ratio, processor
        times: dict[str, list[float]] = {mode: [] for mode in MODES}
        for _ in range(rounds):
            for mode in MODES:
                if mode in providers:
                    # (the hooks use this provider's tracer)
                    provider, ratio, processor = providers[mode]
                    tracing.install(provider, root_ratio=ratio, processors=[processor])
                start = time.process_time()  # the exporter's thread included
                path(deliveries)
                if mode in providers:
                    providers[mode][0].force_flush()
                    tracing.uninstall()
                times[mode].append((time.process_time() - start) / deliveries * 1e6)
    medians = {mode: round(statistics.median(t), 1) for mode, t in times.items()}
    print(f"\ntracing hooks alone, CPU µs per delivery (median of {rounds}): {medians}")
    return medians


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__)
    parser.add_argument("--deliveries", type=int, default=6000, help="end to end, per mode")
    parser.add_argument("--duration", type=float, default=5.0, help="ingress, seconds per mode")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--hooks", action="store_true", help="only the hooks' CPU, in process")
    parser.add_argument(
        "--rate",
        type=float,
        default=0,
        help="only the gateway's CPU per delivery at this fixed rate (deliveries/s)",
    )
    parser.add_argument(
        "--exporter",
        choices=("otlp", "file"),
        default="otlp",
        help="OTLP/gRPC to a stand-in collector (default), or JSON-lines files",
    )
    args = parser.parse_args(argv)
    if args.hooks:
        write_results("tracing_hooks", hooks(args.deliveries))
        return
    if args.rate:
        fixed = asyncio.run(run_fixed_rate(args.rate, args.duration, args.rounds))
        write_results("tracing_fixed_rate", fixed)
        return
    result = asyncio.run(run(args.deliveries, args.duration, args.rounds, args.exporter))
    write_results("tracing", result)


if __name__ == "__main__":
    main()
