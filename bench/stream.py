"""Live stream at scale (issue 16): N SSE clients over 50 organizations, R events/s.

    uv run python -m bench.stream                               # 2,000 clients, 200 events/s
    uv run python -m bench.stream --clients 500 --rate 50 --duration 10
    uv run python -m bench.stream --baseline-src /tmp/old/services/gateway/src   # + a baseline

`python -m polar_organization` (stream opening: ListOrganizations; the streams' periodic
GetUser) and `python -m polar_gateway` run as their own processes; each client is a distinct
user, a member of one of the organizations; the clients run in 2 processes of their own
(bench/stream_client.py, bare sockets). This process publishes `issue_created` events to the
EVENTS stream (as the outbox relay does), round-robin over the organizations, each carrying
its publish time in the issue's title, and meanwhile POSTs signed webhook deliveries to the
same gateway (50/s); the same deliveries were sent for a few seconds before any stream
opened, for comparison.

Reported: delivery latency (arrival at the client - publish) p50/p99 over the measured window,
events delivered/s, the gateway's and the organization service's CPU in the window, the
gateway's CPU per delivered event, the webhook answers' p50/p99, the load generator's CPU, and
exactness: every client received exactly the events of its organization (none missing, none
foreign, none ended).

With --baseline-src, the same run is first made against the gateway at that source tree (e.g.
the previous commit's `services/gateway/src`), then against this one.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import nats
from polar.repository.v1 import events_pb2 as repo_events
from polar.repository.v1 import repository_pb2
from polar_db.engine import create_engine
from polar_db.models import Organization, OrganizationStatus, Platform, User, UserOrganization
from polar_dev.infra import free_port, infra
from polar_gateway.sessions import TokenSigner
from polar_gateway.settings import GatewaySettings
from sqlalchemy import insert

from bench.common import (
    HOST,
    INTERNAL_SECRET,
    TOKEN_KEY,
    bench_database,
    bench_prefix,
    latency_summary,
    process_cpu,
    table,
    write_results,
)
from bench.gateway import (
    SECRET,
    SESSION_SECRET,
    Process,
    gateway_process,
    processes,
    profile,
    wait_http,
)

CLIENT_PROCESSES = 2
WEBHOOKS_PER_SECOND = 50
GC_PROBE = str(Path(__file__).parent / "gc_probe")  # the gateway's sitecustomize


@dataclass(frozen=True)
class Config:
    clients: int = 2000
    organizations: int = 50
    rate: float = 200.0  # events/s over all organizations
    warmup: float = 3.0
    duration: float = 15.0
    recheck_seconds: float = 5.0  # POLAR_STREAM_RECHECK_SECONDS: one GetUser per user this often
    profile: bool = False


async def seed(url: str, config: Config) -> list[tuple[str, str]]:
    """(user id, organization id) of every client: user i is a member of organization i % n."""
    orgs = [uuid.uuid4() for _ in range(config.organizations)]
    users = [uuid.uuid4() for _ in range(config.clients)]
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(User), [{"id": u, "username": f"u{i}"} for i, u in enumerate(users)]
            )
            await conn.execute(
                insert(Organization),
                [
                    {
                        "id": org,
                        "platform": Platform.github,
                        "name": f"org-{i:04d}",
                        "external_id": 1_000_000 + i,
                        "installation_id": 2_000_000 + i,
                        "status": OrganizationStatus.active,
                    }
                    for i, org in enumerate(orgs)
                ],
            )
            pairs = [(u, orgs[i % len(orgs)]) for i, u in enumerate(users)]
            await conn.execute(
                insert(UserOrganization), [{"organization_id": o, "user_id": u} for u, o in pairs]
            )
    finally:
        await engine.dispose()
    return [(str(u), str(o)) for u, o in pairs]


class ClientProcess:
    def __init__(self, host: str, port: int, clients: list[list[str]]) -> None:
        self.job = {"host": host, "port": port, "clients": clients}
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.stream_client",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 28,
        )
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(self.job).encode() + b"\n")
        await self.process.stdin.drain()

    async def ready(self) -> int:
        assert self.process is not None
        assert self.process.stdout is not None
        line = (await asyncio.wait_for(self.process.stdout.readline(), 300)).decode()
        if not line.startswith("ready"):
            raise RuntimeError(f"stream client: {line!r}")
        return int(line.split()[1])

    async def stop(self, start: float, end: float) -> dict[str, Any]:
        assert self.process is not None
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"stop {start} {end}\n".encode())
        await self.process.stdin.drain()
        answer: dict[str, Any] = json.loads(await self.process.stdout.readline())
        await self.process.wait()
        return answer


async def publisher(
    nc: Any, prefix: str, orgs: list[str], config: Config, until: float
) -> dict[str, int]:
    """issue_created events at `config.rate`/s, round-robin over `orgs`, until `until`."""
    sent = dict.fromkeys(orgs, 0)
    subject = prefix + "polar.repository.v1.issue_created"
    interval, n = 0.01, 0
    started = time.monotonic()
    while time.monotonic() < until:
        due = int((time.monotonic() - started) * config.rate)
        while n < due:
            org = orgs[n % len(orgs)]
            issue = repository_pb2.Issue(
                id=str(uuid.uuid4()),
                organization_id=org,
                repository_id=str(uuid.uuid4()),
                title=f"t={time.time():.6f}",
            )
            event_id = str(uuid.uuid4())
            await nc.publish(
                subject,
                repo_events.IssueCreated(issue=issue).SerializeToString(),
                headers={
                    "Nats-Msg-Id": event_id,
                    "ce-specversion": "1.0",
                    "ce-id": event_id,
                    "ce-type": "polar.repository.v1.IssueCreated",
                    "ce-source": "/bench",
                    "ce-time": datetime.now(UTC).isoformat(),
                    "content-type": "application/protobuf",
                },
            )
            sent[org] += 1
            n += 1
        await asyncio.sleep(interval)
    return sent


async def webhooks(
    session: aiohttp.ClientSession, url: str, until: float, window: list[float]
) -> tuple[list[float], int]:
    """Signed deliveries at WEBHOOKS_PER_SECOND; the latencies of those sent in `window`."""
    body = json.dumps({"action": "opened", "issue": {"id": 1}, "bench": "x" * 2000}).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    latencies: list[float] = []
    failures = [0]

    async def one() -> None:
        sent = time.time()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "issues",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": signature,
        }
        try:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                ok = response.status == 202
        except aiohttp.ClientError:
            ok = False
        if not ok:
            failures[0] += 1
        elif window[0] <= sent < window[1]:
            latencies.append((time.time() - sent) * 1000)

    tasks = set()
    while time.monotonic() < until:
        task = asyncio.create_task(one())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        await asyncio.sleep(1 / WEBHOOKS_PER_SECOND)
    if tasks:
        await asyncio.wait(tasks)
    return latencies, failures[0]


def _read_report(path: str) -> dict[str, Any] | None:
    try:
        report: dict[str, Any] = json.loads(Path(path).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return report


async def gc_report(process: Process, path: str) -> dict[str, Any]:
    """The gateway's collector figures now (bench/gc_probe), asked with SIGUSR1."""
    previous = (_read_report(path) or {"report": 0})["report"]
    os.kill(process.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        report = _read_report(path)  # a small local file
        if report is not None and report["report"] > previous:
            return report
    raise RuntimeError("the gateway did not report its collector's figures")


def gc_summary(
    idle: dict[str, Any], loaded: dict[str, Any], end: dict[str, Any], streams: int
) -> dict[str, Any]:
    """Objects per open stream; collections from the streams' opening to the window's end."""
    full, young = 2, 0
    return {
        "objects_idle": idle["objects"],
        "objects_streaming": loaded["objects"],
        "frozen": loaded["frozen"],
        "objects_per_stream": round((loaded["objects"] - idle["objects"]) / max(1, streams)),
        "full_collections": end["collections"][full] - loaded["collections"][full],
        "full_seconds": round(end["seconds"][full] - loaded["seconds"][full], 3),
        "longest_full_ms": round(end["longest"][full] * 1000, 1),
        "young_collections": end["collections"][young] - loaded["collections"][young],
        "all_seconds": round(sum(end["seconds"]) - sum(loaded["seconds"]), 3),
        "by_generation": [  # (collections, seconds) of generations 0, 1, 2
            (
                end["collections"][g] - loaded["collections"][g],
                round(end["seconds"][g] - loaded["seconds"][g], 3),
            )
            for g in range(3)
        ],
        "kinds_per_stream": {
            kind: round((n - idle["kinds"].get(kind, 0)) / max(1, streams), 1)
            for kind, n in loaded["kinds"].items()
            if n - idle["kinds"].get(kind, 0) >= streams / 2
        },
    }


async def run_one(
    name: str, server_url: str, nats_url: str, config: Config, gateway_src: str | None
) -> dict[str, Any]:
    async with (
        bench_database(server_url) as url,
        bench_prefix(nats_url) as prefix,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session,
    ):
        pairs = await seed(url, config)
        org_port, gateway_port = free_port(), free_port()
        organization = Process(
            "organization",
            ["-m", "polar_organization"],
            {
                "POLAR_DATABASE_URL": url,
                "POLAR_NATS_URL": nats_url,
                "POLAR_NATS_PREFIX": prefix,
                "POLAR_INTERNAL_SECRET": INTERNAL_SECRET,
                "POLAR_TOKEN_ENCRYPTION_KEYS": TOKEN_KEY,
                "POLAR_LOG_LEVEL": "WARNING",
                "POLAR_ORGANIZATION_GRPC_PORT": str(org_port),
                "POLAR_GITHUB_API_URL": f"http://{HOST}:9",
            },
        )
        gateway = gateway_process(
            gateway_port,
            nats_url,
            prefix,
            organization_grpc_target=f"{HOST}:{org_port}",
            repository_grpc_target=f"{HOST}:{free_port()}",  # not needed by streams
        )
        gc_file = os.path.join(tempfile.mkdtemp(prefix="polar-bench-gc-"), "gc.json")
        gateway.env = {
            **gateway.env,
            "POLAR_STREAM_RECHECK_SECONDS": str(config.recheck_seconds),
            "POLAR_BENCH_GC_FILE": gc_file,
            "PYTHONPATH": os.pathsep.join(p for p in (gateway_src, GC_PROBE) if p),
        }
        signer = TokenSigner(GatewaySettings(session_secret=SESSION_SECRET))
        clients = [[signer.issue_session(user)[0], org] for user, org in pairs]
        base = f"http://{HOST}:{gateway_port}"
        nc = await nats.connect(nats_url)
        try:
            async with processes(organization, gateway):
                await wait_http(session, f"{base}/healthz", gateway)
                deadline = time.monotonic() + 60
                while True:  # NATS connected, streams and the feed up
                    headers = {"Authorization": f"Bearer {clients[0][0]}"}
                    async with session.get(f"{base}/api/v2/users/me", headers=headers) as r:
                        if r.status == 200:
                            break
                    assert time.monotonic() < deadline, gateway.tail()
                    await asyncio.sleep(0.2)
                # Webhooks alone first: the figure the one under stream load compares with.
                quiet_window = [time.time() + 1, time.time() + 1 + config.warmup + 2]
                quiet, _ = await webhooks(
                    session,
                    f"{base}/api/v2/integrations/github/webhook",
                    time.monotonic() + config.warmup + 3,
                    quiet_window,
                )
                gc_idle = await gc_report(gateway, gc_file)
                shares = [clients[i::CLIENT_PROCESSES] for i in range(CLIENT_PROCESSES)]
                readers = [ClientProcess(HOST, gateway_port, share) for share in shares]
                connect_started = time.monotonic()
                for reader in readers:
                    await reader.start()
                refused = sum([await reader.ready() for reader in readers])
                connect_seconds = time.monotonic() - connect_started
                gc_streaming = await gc_report(gateway, gc_file)
                orgs = sorted({org for _, org in pairs})
                now = time.monotonic()
                until = now + config.warmup + config.duration
                window = [
                    time.time() + config.warmup,
                    time.time() + config.warmup + config.duration,
                ]
                publishing = asyncio.create_task(publisher(nc, prefix, orgs, config, until))
                posting = asyncio.create_task(
                    webhooks(session, f"{base}/api/v2/integrations/github/webhook", until, window)
                )
                await asyncio.sleep(config.warmup)
                profiling = [
                    asyncio.create_task(profile(p, config.duration))
                    for p in (gateway, organization)
                    if config.profile
                ]
                cpu_before = {
                    "gateway": process_cpu(gateway.pid),
                    "organization": process_cpu(organization.pid),
                }
                await asyncio.sleep(config.duration)
                cpu = {
                    "gateway": process_cpu(gateway.pid) - cpu_before["gateway"],
                    "organization": process_cpu(organization.pid) - cpu_before["organization"],
                }
                gc_end = await gc_report(gateway, gc_file)
                sent = await publishing
                profiles = dict(await asyncio.gather(*profiling))
                hook_latencies, hook_failures = await posting
                await asyncio.sleep(3)  # what is in flight arrives
                answers = [await reader.stop(window[0], window[1]) for reader in readers]
        finally:
            await nc.close()
    latencies = [x for a in answers for x in a["latencies"]]
    per_client = [c for a in answers for c in a["clients"]]
    missing = sum(max(0, sent[org] - received) for org, received, _, _ in per_client)
    extra = sum(max(0, received - sent[org]) for org, received, _, _ in per_client)
    foreign = sum(c[2] for c in per_client)
    ended = sum(1 for c in per_client if c[3])
    delivered = len(latencies)
    result = {
        "name": name,
        "clients": config.clients,
        "rate": config.rate,
        "refused": refused,
        "connect_seconds": round(connect_seconds, 1),
        "delivered_per_second": round(delivered / config.duration, 1),
        "delivery": latency_summary(latencies) if latencies else {},
        "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()},
        "gateway_cores": round(cpu["gateway"] / config.duration, 2),
        "gateway_us_per_event": round(cpu["gateway"] / delivered * 1e6, 1) if delivered else None,
        "webhooks_alone": latency_summary(quiet) if quiet else {},
        "webhooks": {
            **(latency_summary(hook_latencies) if hook_latencies else {}),
            "answered": len(hook_latencies),
            "failed": hook_failures,
        },
        "loadgen_cpu_seconds": round(sum(a["cpu_seconds"] for a in answers), 2),
        "gc": gc_summary(gc_idle, gc_streaming, gc_end, config.clients - refused),
        "exact": {"missing": missing, "extra": extra, "foreign": foreign, "ended": ended},
        "profiles": profiles,
    }
    for process, top in profiles.items():
        print(f"\n{name}: {process}, share of samples by function (self, then with callees)")
        print(table(["self %", "total %", "function"], top[:25]))
    return result


def show(results: list[dict[str, Any]], config: Config) -> None:
    print(
        f"\nlive stream: {config.clients:,} clients over {config.organizations} organizations, "
        f"{config.rate:g} events/s, {config.duration:g} s measured (after {config.warmup:g} s), "
        f"user recheck every {config.recheck_seconds:g} s"
    )
    rows = [
        [
            r["name"],
            r["refused"],
            r["delivered_per_second"],
            r["delivery"].get("p50_ms", "-"),
            r["delivery"].get("p99_ms", "-"),
            r["gateway_cores"],
            r["gateway_us_per_event"],
            round(r["cpu_seconds"]["organization"] / config.duration, 2),
            r["webhooks_alone"].get("p99_ms", "-"),
            r["webhooks"].get("p50_ms", "-"),
            r["webhooks"].get("p99_ms", "-"),
            r["webhooks"]["failed"],
            round(r["loadgen_cpu_seconds"], 1),
            r["gc"]["objects_per_stream"],
            r["gc"]["full_collections"],
            r["gc"]["longest_full_ms"],
            "yes" if not any(r["exact"].values()) else json.dumps(r["exact"]),
        ]
        for r in results
    ]
    headers = [
        "gateway", "refused", "delivered/s", "p50 ms", "p99 ms", "gw cores", "gw µs/event",
        "org cores", "hook p99 alone", "hook p50", "hook p99", "hook fail", "clients CPU s",
        "objects/stream", "full GCs", "longest full GC ms", "exact",
    ]  # fmt: skip
    print(table(headers, rows))
    print("target: 2,000 clients x 200 events/s, delivery p99 <= 250 ms, webhook p99 <= 100 ms")
    print(
        "objects/stream: the gateway's objects in the collector's sight (not frozen), streams"
        " open minus before, per stream; full GCs and the longest: from the streams' opening"
        " to the window's end (bench/gc_probe)"
    )


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stream")
    parser.add_argument("--clients", type=int, default=Config.clients)
    parser.add_argument("--organizations", type=int, default=Config.organizations)
    parser.add_argument("--rate", type=float, default=Config.rate)
    parser.add_argument("--duration", type=float, default=Config.duration)
    parser.add_argument("--warmup", type=float, default=Config.warmup)
    parser.add_argument("--recheck-seconds", type=float, default=Config.recheck_seconds)
    parser.add_argument("--profile", action="store_true", help="py-spy the processes")
    parser.add_argument("--baseline-src", help="a gateway source tree to measure first")
    args = parser.parse_args(argv)
    config = Config(
        clients=args.clients,
        organizations=args.organizations,
        rate=args.rate,
        duration=args.duration,
        warmup=args.warmup,
        recheck_seconds=args.recheck_seconds,
        profile=args.profile,
    )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"live stream benchmark: {os.cpu_count()} CPUs, load average {load} before start")
    results = []
    with infra() as servers:
        if args.baseline_src:
            results.append(
                await run_one(
                    "baseline", servers.database_url, servers.nats_url, config, args.baseline_src
                )
            )
        results.append(await run_one("this", servers.database_url, servers.nats_url, config, None))
    show(results, config)
    written = write_results("stream", {"config": vars(args), "load": load, "runs": results})
    print(f"\nwritten to {written}")


if __name__ == "__main__":
    asyncio.run(main())
