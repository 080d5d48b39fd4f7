"""`make dev`: infra, migrations, then every discovered service as a subprocess.

Each service's output is prefixed with its name. Ctrl-C / SIGTERM stops every service
(SIGTERM to its process group, SIGKILL after a timeout; a second Ctrl-C kills at once).
The exit status is non-zero when a service fails to start or dies while the cluster runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TextIO

from .infra import Infra, infra, port_is_free
from .paths import github_fixtures_dir, repo_root
from .services import ServiceSpec, discover_services

RUNNER = "dev"
COLORS = ("36", "33", "35", "32", "34", "31")


class Output:
    """Writes `name | line`, names aligned, colored when writing to a terminal."""

    def __init__(self, names: Sequence[str], stream: TextIO = sys.stdout) -> None:
        self.stream = stream
        self.width = max(len(name) for name in names)
        tty = stream.isatty() and not os.environ.get("NO_COLOR")
        self.colors = {n: COLORS[i % len(COLORS)] for i, n in enumerate(names)} if tty else {}

    def line(self, name: str, text: str) -> None:
        label = name.ljust(self.width)
        if name in self.colors:
            label = f"\033[{self.colors[name]}m{label}\033[0m"
        self.stream.write(f"{label} | {text}\n")
        self.stream.flush()


@dataclass
class Running:
    spec: ServiceSpec
    port: int
    process: asyncio.subprocess.Process
    pump: asyncio.Task[None]


def service_ports(specs: Sequence[ServiceSpec], env: Mapping[str, str]) -> dict[str, int]:
    """Each service's port: its port-env from `env` when set, else the declared default."""
    return {s.name: int(env.get(s.port_env) or s.port) for s in specs}


def service_env(
    specs: Sequence[ServiceSpec], ports: Mapping[str, int], base: Mapping[str, str]
) -> dict[str, str]:
    """The environment of every service: `base` plus every service's port variable, so a
    service (the gateway) can find the others however their ports were configured."""
    # The runner is local development by definition: the dev secrets (the internal one too,
    # when POLAR_INTERNAL_SECRET is unset) are allowed, and grpcurl may list the services.
    env = {
        "POLAR_DEV_MODE": "true",
        "POLAR_GRPC_REFLECTION": "true",
        **base,
        "PYTHONUNBUFFERED": "1",
    }
    env.update({s.port_env: str(ports[s.name]) for s in specs})
    return env


def _die_with_parent() -> None:
    # Linux: the service gets SIGTERM if the runner is killed (-9) instead of living on.
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


async def _pump(stream: asyncio.StreamReader, name: str, out: Output) -> None:
    buffer = b""
    while chunk := await stream.read(65536):  # chunks, not readline: lines can be huge
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            out.line(name, line.decode(errors="replace").rstrip("\r"))
    if buffer:
        out.line(name, buffer.decode(errors="replace"))


async def _start(
    spec: ServiceSpec, port: int, env: dict[str, str], cwd: Path, out: Output
) -> Running:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        spec.module,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd=cwd,
        # Own process group: the terminal's Ctrl-C reaches only the runner, which then stops
        # the services in order; killpg also reaches anything a service started.
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    assert process.stdout is not None
    return Running(spec, port, process, asyncio.create_task(_pump(process.stdout, spec.name, out)))


async def _listening(running: Running, within: float) -> bool:
    deadline = asyncio.get_running_loop().time() + within
    while running.process.returncode is None:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", running.port)
            writer.close()
            return True
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.1)
    return False


def _signal_group(process: asyncio.subprocess.Process, signum: int) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)


async def _stop_all(running: Sequence[Running], grace: float, force: asyncio.Event) -> None:
    for r in running:
        _signal_group(r.process, signal.SIGTERM)
    waiting = asyncio.ensure_future(asyncio.gather(*(r.process.wait() for r in running)))
    forced = asyncio.ensure_future(force.wait())
    either: list[asyncio.Future[Any]] = [waiting, forced]
    await asyncio.wait(either, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
    forced.cancel()
    for r in running:
        _signal_group(r.process, signal.SIGKILL)
    await waiting
    await asyncio.wait([r.pump for r in running], timeout=5)


async def run_services(
    specs: Sequence[ServiceSpec],
    base_env: Mapping[str, str],
    *,
    cwd: Path,
    out: Output,
    startup_timeout: float = 60,
    stop_timeout: float = 15,
    banner: Sequence[str] = (),
) -> int:
    """Runs `specs` until a signal (→ 0) or until one of them exits or fails to start (→ 1)."""
    stop, force = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, lambda: (force if stop.is_set() else stop).set())

    ports = service_ports(specs, base_env)
    busy = [s for s in specs if not port_is_free(ports[s.name])]
    for s in busy:
        out.line(RUNNER, f"port {ports[s.name]} of {s.name} is in use; set {s.port_env} to another")
    if busy:
        return 1
    env = service_env(specs, ports, base_env)
    running: list[Running] = []
    try:
        for spec in specs:
            running.append(await _start(spec, ports[spec.name], env, cwd, out))
        startup = asyncio.ensure_future(
            asyncio.gather(*(_listening(r, startup_timeout) for r in running))
        )
        stopped = asyncio.ensure_future(stop.wait())
        either: list[asyncio.Future[Any]] = [startup, stopped]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            startup.cancel()
            return 0
        stopped.cancel()
        failed = [r for r, ok in zip(running, startup.result(), strict=True) if not ok]
        for r in failed:
            why = (
                f"exited with code {r.process.returncode}"
                if r.process.returncode is not None
                else f"is not listening on port {r.port} after {startup_timeout:.0f}s"
            )
            out.line(RUNNER, f"{r.spec.name} {why}; stopping the cluster")
        if failed:
            return 1

        for text in banner:
            out.line(RUNNER, text)
        for r in running:
            out.line(RUNNER, f"{r.spec.name:<16} {r.spec.protocol:<5} {r.spec.address(r.port)}")
        out.line(RUNNER, "ready; Ctrl-C stops everything")

        exits = {asyncio.ensure_future(r.process.wait()): r for r in running}
        stopped = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([*exits, stopped], return_when=asyncio.FIRST_COMPLETED)
        for task in [*exits, stopped]:
            task.cancel()
        if stop.is_set():
            out.line(RUNNER, "stopping")
            return 0
        dead = next(exits[t] for t in done if t in exits)
        out.line(RUNNER, f"{dead.spec.name} exited with code {dead.process.returncode}; stopping")
        return 1
    finally:
        await _stop_all(running, stop_timeout, force)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _describe(inf: Infra, root: Path) -> list[str]:
    def where(embedded: bool, folder: str) -> str:
        if not embedded or inf.data_dir is None:
            return "(from the environment)"
        return f"(embedded, data in {os.path.relpath(inf.data_dir / folder, root)})"

    return [
        f"{'postgres':<16} {inf.database_url} {where(inf.embedded_postgres, 'postgres')}",
        f"{'nats':<16} {inf.nats_url} {where(inf.embedded_nats, 'nats')}",
    ]


async def _serve(
    specs: Sequence[ServiceSpec],
    env: dict[str, str],
    *,
    fake_github: bool,
    cwd: Path,
    out: Output,
    startup_timeout: float,
    banner: list[str],
) -> int:
    async with contextlib.AsyncExitStack() as stack:
        if fake_github:
            from .fake_github import FakeGitHub

            github = await stack.enter_async_context(FakeGitHub(github_fixtures_dir()))
            env = {**env, "POLAR_GITHUB_API_URL": github.url}
            banner = [*banner, f"{'fake github':<16} {github.url}"]
        return await run_services(
            specs, env, cwd=cwd, out=out, startup_timeout=startup_timeout, banner=banner
        )


def _interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m polar_dev.cluster", description=__doc__)
    parser.add_argument("--services-root", type=Path, help="default: <repo>/services")
    parser.add_argument("--no-migrate", action="store_true", help="skip alembic upgrade head")
    parser.add_argument(
        "--fake-github",
        action="store_true",
        help="serve recorded GitHub responses and point the services at them",
    )
    parser.add_argument("--startup-timeout", type=float, default=60)
    args = parser.parse_args(argv)

    root = repo_root()
    services_root = args.services_root or root / "services"
    specs = discover_services(services_root)
    if not specs:
        print(f"no [tool.polar.service] in {services_root}/*/pyproject.toml", file=sys.stderr)
        return 1
    out = Output([RUNNER, *(s.name for s in specs)])
    # Until the event loop takes over signals: SIGTERM unwinds like Ctrl-C, so the embedded
    # servers started by `infra()` are stopped too.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with infra() as inf:
            if not args.no_migrate:
                out.line(RUNNER, "migrating the database to head")
                from polar_db.migrate import upgrade

                upgrade(inf.database_url)
            env = {**os.environ, **inf.env()}
            try:
                return asyncio.run(
                    _serve(
                        specs,
                        env,
                        fake_github=args.fake_github,
                        cwd=root,
                        out=out,
                        startup_timeout=args.startup_timeout,
                        banner=_describe(inf, root),
                    )
                )
            finally:
                # An impatient second Ctrl-C must not cut the embedded servers' shutdown short.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except KeyboardInterrupt:
        return 130
    except RuntimeError as err:
        print(f"{RUNNER}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
