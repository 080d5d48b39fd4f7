"""Shared by the benchmarks: throwaway database and NATS prefix, the service process, stats."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import platform
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar

import asyncpg
import grpc
import grpc.aio
import nats
import nats.js.errors
from grpc_health.v1 import health_pb2, health_pb2_grpc
from polar_db.engine import asyncpg_dsn
from polar_db.migrate import upgrade
from polar_dev.infra import free_port
from polar_kit.grpc.auth import OPERATOR, channel, credentials
from polar_kit.nats import STREAMS
from polar_kit.settings import ServiceSettings
from polar_organization.app import SERVICE_NAME
from polar_repository.app import SERVICE_NAME as REPOSITORY_SERVICE_NAME
from sqlalchemy.engine import make_url

# BENCH_RESULTS_DIR: elsewhere (the smoke test runs keep their figures out of bench/results).
RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS_DIR") or Path(__file__).parent / "results")
HOST = "127.0.0.1"
CPUS = os.cpu_count() or 1
# Every process of a run verifies (services) or signs (gateway, the load generator) internal
# calls with this; a fresh one per run, as a deployment would have its own.
INTERNAL_SECRET = secrets.token_hex(32)
TOKEN_KEY = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()  # a Fernet key


def bench_channel(target: str, **kwargs: Any) -> grpc.aio.Channel:
    """A channel to a service under test, its calls signed as the operator."""
    settings = ServiceSettings(internal_secret=INTERNAL_SECRET)
    return channel(target, credentials(OPERATOR, settings), **kwargs)


# --- database and NATS -----------------------------------------------------------------------


def database_url(server_url: str, database: str) -> str:
    return make_url(asyncpg_dsn(server_url)).set(database=database).render_as_string(False)


async def _admin(server_url: str, statement: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def bench_database(server_url: str, *, migrate: bool = True) -> AsyncIterator[str]:
    """A fresh `polar_bench_<hex>` database migrated to head (unless not `migrate`), dropped
    on exit (also on error)."""
    name = f"polar_bench_{secrets.token_hex(5)}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    try:
        url = database_url(server_url, name)
        if migrate:
            await asyncio.to_thread(upgrade, url)  # alembic's env runs its own event loop
        yield url
    finally:
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def bench_prefix(nats_url: str) -> AsyncIterator[str]:
    """A fresh NATS prefix; the streams created under it are deleted on exit."""
    prefix = f"b{secrets.token_hex(5)}."
    try:
        yield prefix
    finally:
        nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=0)
        try:
            js = nc.jetstream()
            for spec in STREAMS:
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await js.delete_stream(spec.stream_name(prefix))
        finally:
            await nc.close()


# --- the service under test ----------------------------------------------------------------


@dataclass
class ServiceProcess:
    """`python -m polar_organization` as its own OS process (its own event loop and GIL)."""

    # What differs between services: the gRPC service its health check names, its port variable.
    health_service: ClassVar[str] = SERVICE_NAME
    port_env: ClassVar[str] = "POLAR_ORGANIZATION_GRPC_PORT"

    database_url: str
    nats_url: str
    nats_prefix: str
    extra_env: Mapping[str, str] = field(default_factory=dict)
    # Arguments after the interpreter: a variant entry point can be measured the same way.
    args: Sequence[str] = ("-m", "polar_organization")
    port: int = 0
    process: asyncio.subprocess.Process | None = None
    _log: IO[bytes] | None = None

    @property
    def target(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "POLAR_DATABASE_URL": self.database_url,
            "POLAR_NATS_URL": self.nats_url,
            "POLAR_NATS_PREFIX": self.nats_prefix,
            "POLAR_INTERNAL_SECRET": INTERNAL_SECRET,
            "POLAR_TOKEN_ENCRYPTION_KEYS": TOKEN_KEY,
            self.port_env: str(self.port),
            # Never reached by these benchmarks; keeps every byte on 127.0.0.1 regardless.
            "POLAR_GITHUB_API_URL": f"http://{HOST}:9",
            **self.extra_env,
        }

    async def start(self, timeout: float = 60) -> None:  # noqa: ASYNC109
        self.port = self.port or free_port()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            *self.args,
            env=self.env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        try:
            await self._wait_serving(timeout)
        except BaseException:
            await self.stop()
            raise

    async def _wait_serving(self, timeout: float) -> None:  # noqa: ASYNC109
        assert self.process is not None
        deadline = time.monotonic() + timeout
        async with grpc.aio.insecure_channel(self.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service=self.health_service)
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(f"service exited early:\n{self.log_tail()}")
                try:
                    response = await health.Check(request, timeout=1)
                    if response.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"service not SERVING after {timeout}s:\n{self.log_tail()}")
                await asyncio.sleep(0.1)

    def log_tail(self, lines: int = 20) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return "\n".join(self._log.read().decode(errors="replace").splitlines()[-lines:])

    def status(self) -> dict[str, str]:
        """/proc/<pid>/status as a dict (VmRSS, VmHWM, Threads...)."""
        text = Path(f"/proc/{self.pid}/status").read_text()
        return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class RepositoryProcess(ServiceProcess):
    """`python -m polar_repository` as its own OS process."""

    health_service: ClassVar[str] = REPOSITORY_SERVICE_NAME
    port_env: ClassVar[str] = "POLAR_REPOSITORY_GRPC_PORT"

    args: Sequence[str] = ("-m", "polar_repository")


@contextlib.asynccontextmanager
async def running_service(
    database_url: str,
    nats_url: str,
    prefix: str,
    extra_env: Mapping[str, str] | None = None,
    args: Sequence[str] = ("-m", "polar_organization"),
) -> AsyncIterator[ServiceProcess]:
    service = ServiceProcess(database_url, nats_url, prefix, dict(extra_env or {}), args)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


# --- measuring -----------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float]:
    values = sorted(latencies_ms)
    return {
        "p50_ms": round(percentile(values, 50), 3),
        "p90_ms": round(percentile(values, 90), 3),
        "p99_ms": round(percentile(values, 99), 3),
        "max_ms": round(values[-1], 3) if values else 0.0,
    }


# A probe reads a cumulative counter (CPU seconds...), whole or in parts (one per process, say).
# For parts, the delta over a window is summed over the parts present at its end: one that
# appears meanwhile counts in full, one that vanishes does not turn the total negative.
CpuProbe = Callable[[], Awaitable[float]]
Probe = Callable[[], Awaitable[float | Mapping[str, float]]]


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far; 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def pid_cpu(pid: int) -> CpuProbe:
    async def probe() -> float:
        return process_cpu(pid)

    return probe


def postgres_cpu(url: str) -> CpuProbe:
    """CPU of the backends connected to `url`'s database now (PostgreSQL on this machine).
    A total: backends that closed since an earlier reading take their CPU with them, see
    PostgresProbes.cpu for a reading in parts."""

    async def probe() -> float:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            return sum((await PostgresProbes(conn).cpu()).values())
        finally:
            await conn.close()

    return probe


@dataclass
class PostgresProbes:
    """Counters of one database, read over `conn` (PostgreSQL runs on this machine)."""

    conn: Any  # asyncpg.Connection to that database

    async def cpu(self) -> Mapping[str, float]:
        """CPU seconds of each backend connected to the database, but ours."""
        rows = await self.conn.fetch(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return {str(r["pid"]): process_cpu(r["pid"]) for r in rows}

    async def sessions(self) -> Mapping[str, float]:
        """Connections ever opened to the database (a pool that keeps its connections adds none)."""
        await self.conn.execute("SELECT pg_stat_clear_snapshot()")
        count = await self.conn.fetchval(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        )
        return {"sessions": float(count or 0)}


@dataclass
class LoadResult:
    name: str
    concurrency: int
    seconds: float
    requests: int = 0
    errors: int = 0
    first_error: str | None = None
    latencies_ms: list[float] = field(default_factory=list)
    deltas: dict[str, float] = field(default_factory=dict)  # per probe, over the measured window

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def per_request(self, probe: str, scale: float = 1.0) -> float | None:
        if probe not in self.deltas or not self.requests:
            return None
        return self.deltas[probe] * scale / self.requests

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "seconds": self.seconds,
            "requests": self.requests,
            "errors": self.errors,
            "first_error": self.first_error,
            "rps": round(self.rps, 1),
            **latency_summary(self.latencies_ms),
            # Probe deltas over the measured window, in total and per request.
            "window_deltas": {k: round(v, 3) for k, v in self.deltas.items()},
            "per_request": {k: self.per_request(k) for k in self.deltas},
        }


async def closed_loop(
    name: str,
    call: Callable[[int], Awaitable[object]],
    *,
    concurrency: int,
    warmup: float,
    duration: float,
    probes: Mapping[str, Probe] | None = None,
) -> LoadResult:
    """`concurrency` callers each awaiting `call(caller_index)` back to back for `warmup` +
    `duration` seconds; only calls started after the warm-up are counted. `probes` are read
    when the measured window opens and closes."""
    result = LoadResult(name, concurrency, duration)
    measure_from = time.perf_counter() + warmup
    end = measure_from + duration
    probes = probes or {}

    async def caller(index: int) -> None:
        while (start := time.perf_counter()) < end:
            try:
                await call(index)
            except Exception as exc:
                if start >= measure_from:
                    result.errors += 1
                    result.first_error = result.first_error or repr(exc)
                continue
            if start >= measure_from:
                result.requests += 1
                result.latencies_ms.append((time.perf_counter() - start) * 1000)

    async def sample() -> dict[str, Mapping[str, float]]:
        readings = {name: await probe() for name, probe in probes.items()}
        return {k: v if isinstance(v, Mapping) else {"": v} for k, v in readings.items()}

    async def window() -> None:
        await asyncio.sleep(measure_from - time.perf_counter())
        before = await sample()
        await asyncio.sleep(end - time.perf_counter())
        after = await sample()
        result.deltas = {
            name: sum(v - before[name].get(part, 0.0) for part, v in after[name].items())
            for name in probes
        }

    await asyncio.gather(window(), *(caller(i) for i in range(concurrency)))
    return result


# --- reporting -----------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def machine() -> dict[str, Any]:
    return {
        "cpus": CPUS,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_results(name: str, results: Mapping[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **results}, indent=2) + "\n")
    return path
