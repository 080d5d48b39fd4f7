"""Outbox: from the commit of a transaction that recorded an event to a NATS subscriber.

The producer commits transactions calling `record_event`, in a child process of its own so
that a busy producer cannot delay the subscriber's stamps (or its own commit stamps). The
relay is the real one, inside a `python -m polar_organization` process, woken by
LISTEN/NOTIFY. A core NATS subscriber in this process stamps each message on arrival, keyed
by its `ce-id` header. Latency = arrival - return of the commit; both stamps are
time.monotonic(), CLOCK_MONOTONIC, one clock for every process of the machine (Linux).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import nats
from nats.aio.msg import Msg
from polar.organization.v1 import events_pb2
from polar_db.engine import create_engine, create_sessionmaker
from polar_kit.nats import ensure_streams
from polar_kit.outbox import record_event
from polar_organization.settings import OrganizationSettings

from bench.common import (
    bench_database,
    bench_prefix,
    latency_summary,
    percentile,
    process_cpu,
    running_service,
    table,
    write_results,
)

SUBJECT = "polar.organization.v1.member_removed"
SOURCE = "/bench/outbox"
TARGET_P99_MS = 50.0


@dataclass(frozen=True)
class OutboxConfig:
    rate: float = 500.0  # events/s, one event per transaction
    seconds: float = 5.0
    warmup_seconds: float = 1.0
    # Concurrent producer transactions when pacing (and the producer's pool size). Few: the
    # commits of transactions that NOTIFY queue on one lock held through the WAL flush, so
    # more of them at once make each slower and the total lower, not higher.
    max_in_flight: int = 8
    burst_events: int = 5000
    burst_batch: int = 50  # events per transaction
    burst_producers: int = 4
    drain_timeout: float = 30.0


# --- producer (child process) ----------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What the producer process does: paced single-event transactions, or a flat-out burst."""

    mode: str  # "paced" | "burst"
    rate: float = 0.0
    seconds: float = 0.0
    in_flight: int = 1
    events: int = 0
    batch: int = 1
    producers: int = 1


@dataclass
class Produced:
    committed: dict[str, float]  # event id -> monotonic time the COMMIT returned
    commit_ms: list[float]  # how long each COMMIT took (WAL flush included)
    started: float
    cpu_seconds: float = 0.0  # the producer's, from the first commit on


def produce(url: str, plan: Plan) -> Produced:
    """Entry point of the producer process."""
    return asyncio.run(_produce(url, plan))


def ready() -> None:
    """Submitted first so the child's start-up and imports are not measured."""


async def _produce(url: str, plan: Plan) -> Produced:
    # No pre-ping: it adds three round trips per transaction that are no part of the outbox.
    size = max(plan.in_flight, plan.producers)
    # As the organization service: its outbox is organization.outbox_events.
    engine = create_engine(
        url, owner="organization", pool_pre_ping=False, pool_size=size, max_overflow=0
    )
    sessionmaker = create_sessionmaker(engine)
    committed: dict[str, float] = {}
    commit_ms: list[float] = []

    async def commit(count: int) -> None:
        async with sessionmaker() as session:
            ids = [
                await record_event(session, SUBJECT, _event(), source=SOURCE) for _ in range(count)
            ]
            before = time.monotonic()
            await session.commit()
            now = time.monotonic()
        committed.update((str(i), now) for i in ids)
        commit_ms.append((now - before) * 1000)

    try:
        async with engine.connect():  # one connection open before the clock starts
            pass
        cpu = time.process_time()
        if plan.mode == "paced":
            started = await paced(
                lambda: commit(1), rate=plan.rate, seconds=plan.seconds, in_flight=plan.in_flight
            )
        else:
            started = await burst(
                commit, events=plan.events, batch=plan.batch, producers=plan.producers
            )
        cpu = time.process_time() - cpu
    finally:
        await engine.dispose()
    return Produced(committed, commit_ms, started, cpu)


def _event() -> events_pb2.MemberRemoved:
    return events_pb2.MemberRemoved(organization_id=str(uuid.uuid4()), user_id=str(uuid.uuid4()))


async def paced(
    produce: Callable[[], Coroutine[Any, Any, None]],
    *,
    rate: float,
    seconds: float,
    in_flight: int,
) -> float:
    """Start `produce()` `rate` times a second for `seconds` (no more once they are over), at
    most `in_flight` at once; returns when the first started. A late tick starts at once:
    the schedule, not the previous call, decides when the next starts (no coordinated
    omission)."""
    limit = asyncio.Semaphore(in_flight)
    tasks: list[asyncio.Task[None]] = []
    started = time.monotonic()
    for n in range(round(rate * seconds)):
        if time.monotonic() - started > seconds:
            break  # the producer cannot keep up: it shows as commit/s below the rate
        delay = started + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await limit.acquire()
        task = asyncio.create_task(produce())
        task.add_done_callback(lambda _t: limit.release())
        tasks.append(task)
    await asyncio.gather(*tasks)
    return started


async def burst(
    produce: Callable[[int], Awaitable[None]], *, events: int, batch: int, producers: int
) -> float:
    """`events` in transactions of `batch`, from `producers` concurrent loops, flat out."""
    batches = itertools.repeat(batch, events // batch)

    async def producer() -> None:
        for size in batches:  # one shared iterator: each batch is taken by one producer
            await produce(size)

    started = time.monotonic()
    await asyncio.gather(*(producer() for _ in range(producers)))
    return started


# --- subscriber (this process) ---------------------------------------------------------------


@dataclass
class Tracker:
    """Arrival times (monotonic) by event id."""

    received: dict[str, float] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_message(self, msg: Msg) -> None:
        now = time.monotonic()
        event_id = (msg.headers or {}).get("ce-id")
        if event_id is not None:
            self.received.setdefault(event_id, now)
            self.arrived.set()

    async def wait_all(self, ids: list[str], timeout: float) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while any(i not in self.received for i in ids):
            self.arrived.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)

    def summary(
        self, produced: Produced, *, from_first_arrival: bool = False, relay_cpu: float = 0.0
    ) -> dict[str, Any]:
        ids = list(produced.committed)
        arrivals = [self.received[i] for i in ids if i in self.received]
        last_commit = max(produced.committed.values(), default=produced.started)
        # Drain: from the first commit, or (backlog) from the first arrival, to the last arrival.
        start = min(arrivals, default=0.0) if from_first_arrival else produced.started
        drain = max(arrivals, default=start) - start
        # Clamped at 0: a relay round already under way can publish a row the moment it is
        # committed, before the producer's task has resumed from its COMMIT.
        latencies = [
            max(0.0, self.received[i] - t) * 1000
            for i, t in produced.committed.items()
            if i in self.received
        ]
        early = sum(
            1 for i, t in produced.committed.items() if i in self.received and self.received[i] < t
        )
        commits = sorted(produced.commit_ms)
        return {
            "events": len(ids),
            "received": len(arrivals),
            "missing": len(ids) - len(arrivals),
            "commit_seconds": round(last_commit - produced.started, 3),
            "commit_rate": round(len(ids) / max(last_commit - produced.started, 1e-9), 1),
            "drain_seconds": round(drain, 3),
            "delivered_rate": round(len(arrivals) / max(drain, 1e-9), 1),
            **latency_summary(latencies),
            "arrived_before_commit_returned": early,
            # CPU per event: of the producer process, and of the service process (the relay).
            "producer_cpu_ms": round(produced.cpu_seconds * 1000 / max(len(ids), 1), 3),
            "relay_cpu_ms": round(relay_cpu * 1000 / max(len(ids), 1), 3),
            "commit_p50_ms": round(percentile(commits, 50), 3),
            "commit_p99_ms": round(percentile(commits, 99), 3),
        }


async def run(server_url: str, nats_url: str, config: OutboxConfig) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    async with bench_database(server_url) as url, bench_prefix(nats_url) as prefix:
        settings = OrganizationSettings(database_url=url, nats_url=nats_url, nats_prefix=prefix)
        nc = await nats.connect(nats_url)
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        try:
            await ensure_streams(nc.jetstream(), settings)
            tracker = Tracker()
            await nc.subscribe(f"{prefix}polar.>", cb=tracker.on_message)
            await loop.run_in_executor(pool, ready)

            async def producer(plan: Plan, wait: bool = True) -> Produced:
                produced = await loop.run_in_executor(pool, produce, url, plan)
                if wait:
                    await tracker.wait_all(list(produced.committed), config.drain_timeout)
                return produced

            paced_plan = Plan("paced", rate=config.rate, in_flight=config.max_in_flight)
            burst_plan = Plan(
                "burst",
                events=config.burst_events,
                batch=config.burst_batch,
                producers=config.burst_producers,
            )

            async def measured(plan: Plan, relay: int) -> dict[str, Any]:
                relay_cpu = process_cpu(relay)
                produced = await producer(plan)
                return tracker.summary(produced, relay_cpu=process_cpu(relay) - relay_cpu)

            async with running_service(url, nats_url, prefix) as service:
                # Warm-up: the relay's connections and prepared statements, the subscriber.
                await producer(replace(paced_plan, seconds=config.warmup_seconds))
                steady = await measured(replace(paced_plan, seconds=config.seconds), service.pid)
                flood = await measured(burst_plan, service.pid)
            # Backlog: committed while no relay runs, then drained by a fresh service process.
            backlog_events = await producer(burst_plan, wait=False)
            async with running_service(url, nats_url, prefix) as service:
                relay_cpu = process_cpu(service.pid)  # the relay starts once SERVING
                await tracker.wait_all(list(backlog_events.committed), config.drain_timeout)
                relay_cpu = process_cpu(service.pid) - relay_cpu
            backlog = tracker.summary(backlog_events, from_first_arrival=True, relay_cpu=relay_cpu)
        finally:
            pool.shutdown()
            await nc.close()

    report(config, steady, flood, backlog)
    out = {
        "config": asdict(config),
        "steady": steady,
        "burst": flood,
        "backlog": backlog,
        "target_p99_ms": TARGET_P99_MS,
    }
    print(f"   results: {write_results('outbox', out)}")
    return out


def report(
    config: OutboxConfig, steady: dict[str, Any], flood: dict[str, Any], backlog: dict[str, Any]
) -> None:
    print(
        "\n== Outbox: commit -> relay (in the service process) -> JetStream -> subscriber\n"
        f"   steady: {config.rate:g} events/s for {config.seconds:g}s, one event per "
        f"transaction. burst: {config.burst_events} events, {config.burst_batch} per "
        f"transaction, {config.burst_producers} producers, relay running. backlog: the same "
        "burst committed with no relay running, then drained by a fresh service process."
    )
    keys = ["events", "missing", "commit_rate", "commit_p99_ms", "delivered_rate"]
    keys += ["p50_ms", "p99_ms", "max_ms", "producer_cpu_ms", "relay_cpu_ms"]
    live = ["events", "missing", "delivered_rate", "relay_cpu_ms"]  # what backlog measures
    rows = [
        [name, *(r[k] if name != "backlog" or k in live else "-" for k in keys)]
        for name, r in (("steady", steady), ("burst", flood), ("backlog", backlog))
    ]
    headers = ["mode", "events", "missing", "commit/s", "COMMIT p99 ms", "delivered/s"]
    headers += ["p50 ms", "p99 ms", "max ms", "CPU ms/event: producer", "relay"]
    print(table(headers, rows))
    if steady["commit_rate"] < 0.95 * config.rate:
        verdict = f"not measured, the producer reached {steady['commit_rate']:g}/s only"
    elif steady["p99_ms"] < TARGET_P99_MS and not steady["missing"]:
        verdict = "met"
    else:
        verdict = "NOT met"
    print(
        f"   target: p99 < {TARGET_P99_MS:g} ms at {config.rate:g}/s: {verdict}. "
        "delivered/s = arrivals / (last arrival - first commit); for backlog from the first "
        "arrival: the relay's drain rate.\n   p50/p99/max: COMMIT returned -> message "
        "received. COMMIT p99: the COMMIT itself (WAL flush)."
    )
