"""gRPC server bootstrap and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import grpc.aio
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from nats.aio.client import Client as NatsClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from polar_kit.grpc.auth import AllowList, AuthInterceptor, internal_secret
from polar_kit.grpc.interceptors import (
    ErrorInterceptor,
    FieldBehaviorInterceptor,
    MetricsInterceptor,
    RequestIdInterceptor,
    UnitOfWorkInterceptor,
)
from polar_kit.metrics import init_grpc_metrics, start_metrics_server
from polar_kit.settings import ServiceSettings

log = structlog.get_logger(__name__)

# Calls a server holds before taking them (see start_server); past it, a call is CANCELLED.
MAX_PENDING_CALLS = 20_000


@dataclass(frozen=True)
class ServiceSpec:
    """One gRPC service: its full name (`polar.organization.v1.OrganizationService`), the
    generated `add_<Name>Servicer_to_server` function, the servicer instance and who may
    call which of its methods (polar_kit.grpc.auth)."""

    name: str
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: object
    callers: AllowList


class Worker(Protocol):
    """Background loop run beside the server (Consumer, OutboxRelay): returns once `stop` is
    set and the work in hand is finished."""

    async def run(self, stop: asyncio.Event) -> None: ...


@dataclass
class RunningServer:
    server: grpc.aio.Server
    health: Any  # grpc_health.v1.health.aio.HealthServicer
    port: int

    async def stop(self, grace: float | None) -> None:
        # NOT_SERVING first so load balancers stop sending before we refuse calls.
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start_server(
    *,
    port: int,
    services: Sequence[ServiceSpec],
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: ServiceSettings,
    host: str = "[::]",
) -> RunningServer:
    """Start a server with health, reflection (when `settings.grpc_reflection`) and the
    standard interceptors. `port=0` picks a free port (see RunningServer.port). Refuses to
    start without a real internal secret outside development mode."""
    auth = AuthInterceptor(internal_secret(settings), {s.name: s.callers for s in services})
    server = grpc.aio.server(
        interceptors=[
            RequestIdInterceptor(),
            MetricsInterceptor(),
            # Before the unit of work: an unauthenticated call never reaches the database.
            auth,
            ErrorInterceptor(),
            FieldBehaviorInterceptor(),
            UnitOfWorkInterceptor(sessionmaker),
        ],
        options=[
            # A second process on the same port must fail, not silently share it.
            ("grpc.so_reuseport", 0),
            # Calls wait in grpc-core until the aio server takes them, one at a time. Past
            # 1,000 waiting, core's default drops calls at random as CANCELLED, which no
            # caller retries: a burst (a gateway opening 2,000 streams) lost some. They
            # wait their turn instead, bounded by their deadlines (decision 0031).
            ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
            ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS),
        ],
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for spec in services:
        spec.add_to_server(spec.servicer, server)
    if settings.grpc_reflection:
        reflection.enable_server_reflection(
            [*(s.name for s in services), health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
    init_grpc_metrics("server", [*(s.name for s in services), health.SERVICE_NAME])
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    for spec in services:
        await health_servicer.set(spec.name, health_pb2.HealthCheckResponse.SERVING)
    log.info("grpc server listening", port=bound, services=[s.name for s in services])
    return RunningServer(server=server, health=health_servicer, port=bound)


async def run_until_signal(
    server: RunningServer | None,
    *,
    workers: Sequence[Worker] = (),
    nc: NatsClient | None = None,
    engine: AsyncEngine | None = None,
    grace: float = 10,
    stop: asyncio.Event | None = None,
) -> None:
    """Run `workers` until SIGTERM/SIGINT (or `stop` is set, or a worker dies), then shut
    down in order: health NOT_SERVING, stop workers (each finishes its message in hand) and
    the server (in-flight RPCs get `grace` seconds), then close NATS and the engine.
    Re-raises a worker's crash so the process exits non-zero and gets restarted."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(w.run(stop), name=type(w).__name__) for w in workers]
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        log.info("shutting down", by_signal=stop.is_set())
        stop.set()
        if server is not None:
            await server.health.enter_graceful_shutdown()
        pending = {asyncio.ensure_future(server.stop(grace))} if server else set()
        pending |= set(tasks)
        _, late = await asyncio.wait(pending, timeout=grace + 5)
        for task in late:
            log.warning("still running after grace period, cancelling", task=task.get_name())
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
    finally:
        waiter.cancel()
        for sig in signals:
            loop.remove_signal_handler(sig)
        if nc is not None and not nc.is_closed:
            # Flushes what was published; bounded so a NATS outage cannot hang the exit.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.drain(), 5)
            if not nc.is_closed:
                await nc.close()
        if engine is not None:
            await engine.dispose()
    failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception()]
    if failed:
        raise RuntimeError(f"worker {failed[0].get_name()} failed") from failed[0].exception()
    log.info("stopped")


def _release_startup_memory() -> None:
    """Hand the heap pages freed after imports and start-up back to the OS (glibc keeps them
    otherwise): a few MB of resident memory per replica for nothing. Then take what is left
    (modules, classes, caches: ~140k objects, alive for good) out of the cyclic collector's
    sight: every full collection traversed them all, ~20% of the repository service's CPU
    on the webhook path (bench/README.md)."""
    gc.collect()
    gc.freeze()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


async def serve(
    *,
    port: int,
    services: Sequence[ServiceSpec],
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: ServiceSettings,
    workers: Sequence[Worker] = (),
    nc: NatsClient | None = None,
    engine: AsyncEngine | None = None,
) -> None:
    """What a service's `__main__` awaits: metrics endpoint, gRPC server, background workers,
    graceful shutdown on SIGTERM/SIGINT."""
    start_metrics_server(settings.metrics_port, settings.metrics_host)
    if settings.metrics_port and nc is not None:
        # Imported here: sampler -> consumer -> tracing -> polar_kit.grpc would be a cycle.
        from polar_kit.sampler import MetricsSampler

        workers = [*workers, MetricsSampler(workers, nc.jetstream(), settings)]
    server = await start_server(
        port=port,
        services=services,
        sessionmaker=sessionmaker,
        settings=settings,
        host=settings.grpc_host,
    )
    _release_startup_memory()
    await run_until_signal(
        server,
        workers=workers,
        nc=nc,
        engine=engine,
        grace=settings.shutdown_grace_seconds,
    )
