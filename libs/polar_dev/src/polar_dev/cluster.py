"""`make dev`: infra, migrations, then every discovered service as a subprocess.

Each service's output is prefixed with its name. Ctrl-C / SIGTERM drains every service
(SIGTERM to its process group; each finishes its work in hand and exits), then stops the
embedded PostgreSQL and NATS last. A second Ctrl-C, more than FORCE_AFTER seconds after the
first, kills the services at once (a terminal's Ctrl-C often arrives twice: once from the
terminal, once forwarded by `uv run`). The exit status is non-zero when a service fails to
start, dies while the cluster runs, or does not exit 0 when stopped.

Every listener binds 127.0.0.1. The servers' URLs and the development secrets are written to
`.dev/env`, where the operator tools (parked messages, migrations, send_webhooks, token) find
them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import os
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TextIO

import httpx
from polar_db.devenv import parse_env_file

from .infra import Infra, infra, port_is_free
from .paths import dev_dir, github_fixtures_dir, repo_root
from .services import ServiceSpec, discover_services

RUNNER = "dev"
COLORS = ("36", "33", "35", "32", "34", "31")
FORCE_AFTER = 2.0  # seconds: an earlier second SIGINT is the same Ctrl-C, forwarded
LOCAL = "127.0.0.1"


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
    env = {
        # Local development by definition: the dev secrets are allowed, listeners stay on this
        # machine, and logs are for a person (each line is prefixed by the runner anyway).
        "POLAR_DEV_MODE": "true",
        "POLAR_GRPC_HOST": LOCAL,
        "POLAR_METRICS_HOST": LOCAL,
        "POLAR_GATEWAY_HTTP_HOST": LOCAL,
        "POLAR_LOG_JSON": "false",
        # grpcurl may list the services; the internal secret is the dev one when unset.
        "POLAR_GRPC_REFLECTION": "true",
        **base,
        "PYTHONUNBUFFERED": "1",
    }
    env.update({s.port_env: str(ports[s.name]) for s in specs})
    http = [s for s in specs if s.protocol == "http"]
    if http and "POLAR_PUBLIC_URL" not in base:
        # Sign-in's redirect_uri: wherever the gateway listens (its port may be configured).
        env["POLAR_PUBLIC_URL"] = http[0].address(ports[http[0].name])
    return env


def metrics_ports(specs: Sequence[ServiceSpec], first: int = 9101) -> dict[str, int]:
    """A /metrics port of its own for each service (the first free ones from `first`)."""
    ports: dict[str, int] = {}
    candidate = first
    for spec in specs:
        while not port_is_free(candidate) or candidate in ports.values():
            candidate += 1
        ports[spec.name] = candidate
        candidate += 1
    return ports


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
    out.line(RUNNER, f"starting {spec.name} (python -m {spec.module})")
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


async def _stop_all(
    running: Sequence[Running], grace: float, force: asyncio.Event, out: Output
) -> bool:
    """SIGTERM to every service, SIGKILL after `grace` or on `force`; True if all exited 0."""
    for r in running:
        _signal_group(r.process, signal.SIGTERM)
    waiting = asyncio.ensure_future(asyncio.gather(*(r.process.wait() for r in running)))
    forced = asyncio.ensure_future(force.wait())
    either: list[asyncio.Future[Any]] = [waiting, forced]
    await asyncio.wait(either, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
    forced.cancel()
    for r in running:
        if r.process.returncode is None:
            out.line(RUNNER, f"{r.spec.name} did not stop in time: killing it")
        _signal_group(r.process, signal.SIGKILL)
    await waiting
    await asyncio.wait([r.pump for r in running], timeout=5)
    for r in running:
        out.line(RUNNER, f"{r.spec.name} stopped (exit code {r.process.returncode})")
    return all(r.process.returncode == 0 for r in running)


async def run_services(
    specs: Sequence[ServiceSpec],
    base_env: Mapping[str, str],
    *,
    cwd: Path,
    out: Output,
    startup_timeout: float = 60,
    stop_timeout: float = 15,
    banner: Sequence[str] = (),
    on_ready: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Runs `specs` until a signal (→ 0) or until one of them exits or fails to start (→ 1).

    Also 1 when a service does not exit 0 once asked to stop: a drain that fails is a bug.
    """
    stop, force = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    stopping_since: list[float] = []

    def on_signal() -> None:
        if not stop.is_set():
            stopping_since.append(loop.time())
            stop.set()
        elif loop.time() - stopping_since[0] > FORCE_AFTER:
            out.line(RUNNER, "second Ctrl-C: killing the services")
            force.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)

    ports = service_ports(specs, base_env)
    busy = [s for s in specs if not port_is_free(ports[s.name])]
    for s in busy:
        out.line(RUNNER, f"port {ports[s.name]} of {s.name} is in use; set {s.port_env} to another")
    if busy:
        return 1
    env = service_env(specs, ports, base_env)
    metrics = metrics_ports(specs) if "POLAR_METRICS_PORT" not in base_env else {}
    running: list[Running] = []
    try:
        for spec in specs:
            own = {**env, "POLAR_METRICS_PORT": str(metrics[spec.name])} if metrics else env
            running.append(await _start(spec, ports[spec.name], own, cwd, out))
        status = await _supervise(running, stop, out, startup_timeout, banner, metrics, on_ready)
    finally:
        clean = await _stop_all(running, stop_timeout, force, out)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return status if clean or force.is_set() else 1


async def _supervise(
    running: Sequence[Running],
    stop: asyncio.Event,
    out: Output,
    startup_timeout: float,
    banner: Sequence[str],
    metrics: Mapping[str, int],
    on_ready: Callable[[], Awaitable[None]] | None,
) -> int:
    """Waits for every service to listen, then for a stop signal or a service's exit."""
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
        if r.spec.protocol == "http":
            out.line(RUNNER, f"{'':<16} docs  {r.spec.address(r.port)}/docs")
        if metrics:
            out.line(RUNNER, f"{'':<16} metrics http://{LOCAL}:{metrics[r.spec.name]}/metrics")
    if on_ready is not None:
        await on_ready()
    out.line(RUNNER, "ready; Ctrl-C stops everything")

    exits = {asyncio.ensure_future(r.process.wait()): r for r in running}
    stopped = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait([*exits, stopped], return_when=asyncio.FIRST_COMPLETED)
    for task in [*exits, stopped]:
        task.cancel()
    if stop.is_set():
        out.line(RUNNER, "stopping: draining every service")
        return 0
    dead = next(exits[t] for t in done if t in exits)
    out.line(RUNNER, f"{dead.spec.name} exited with code {dead.process.returncode}; stopping")
    return 1


def _describe(inf: Infra, root: Path) -> list[str]:
    def where(embedded: bool, folder: str) -> str:
        if not embedded or inf.data_dir is None:
            return "(from the environment)"
        return f"(embedded, data in {os.path.relpath(inf.data_dir / folder, root)})"

    return [
        f"{'postgres':<16} {inf.database_url} {where(inf.embedded_postgres, 'postgres')}",
        f"{'nats':<16} {inf.nats_url} {where(inf.embedded_nats, 'nats')}",
    ]


def _shown(path: Path, root: Path) -> str:
    """`path` relative to `root` when inside it (`.dev/env`), else as is."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _fernet_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


# The secrets a cluster needs, generated for this checkout on the first run.
DEV_SECRETS: dict[str, Callable[[], str]] = {
    "POLAR_SESSION_SECRET": lambda: secrets.token_urlsafe(32),
    "POLAR_GITHUB_WEBHOOK_SECRET": lambda: secrets.token_urlsafe(32),
    "POLAR_INTERNAL_SECRET": lambda: secrets.token_urlsafe(32),
    "POLAR_TOKEN_ENCRYPTION_KEYS": _fernet_key,
}


# What the operator tools need from the runner's environment (no GitHub credentials).
TOOL_VARIABLES = frozenset(
    {"POLAR_DATABASE_URL", "POLAR_NATS_URL", "POLAR_NATS_PREFIX", *DEV_SECRETS}
)


def write_dev_env(path: Path, values: Mapping[str, str]) -> dict[str, str]:
    """Writes `path` (`.dev/env`): `values`, plus secrets generated on the first run and kept.

    The secrets are random per checkout rather than the public development defaults, and
    kept across runs so that tokens minted yesterday still verify today. Returns what was
    written.
    """
    old = parse_env_file(path.read_text()) if path.is_file() else {}
    env = {name: old.get(name) or make() for name, make in DEV_SECRETS.items()}
    env.update(values)
    lines = [
        "# Written by `make dev` (polar_dev.cluster); read by the operator tools when the",
        "# environment does not set these. Local development only. Delete .dev/ to reset.",
        *(f"{key}={value}" for key, value in sorted(env.items())),
    ]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return env


async def _serve(
    specs: Sequence[ServiceSpec],
    env: dict[str, str],
    *,
    fake_github: bool,
    demo: bool,
    dev_env_file: Path | None,
    cwd: Path,
    out: Output,
    startup_timeout: float,
    banner: list[str],
) -> int:
    ports = service_ports(specs, env)
    async with contextlib.AsyncExitStack() as stack:
        github = None
        if fake_github:
            from .fake_github import FakeGitHub

            github = await stack.enter_async_context(FakeGitHub(github_fixtures_dir()))
            env = {**env, **github.oauth_environment()}
            banner = [*banner, f"{'fake github':<16} {github.url} (sign-in and the App's API)"]
        if dev_env_file is not None:
            shared = {k: v for k, v in env.items() if k.startswith("POLAR_") and "\n" not in v}
            tool_env = {
                **{k: v for k, v in shared.items() if k in TOOL_VARIABLES},
                "POLAR_DEV_MODE": "true",
                **{s.port_env: str(ports[s.name]) for s in specs},
            }
            # The secrets in the environment win; otherwise the file's (generated) ones.
            written = write_dev_env(dev_env_file, tool_env)
            env = {**written, **env}
            banner = [*banner, f"{'tools':<16} read {_shown(dev_env_file, cwd)}"]

        on_ready = None
        if demo:
            if github is None:
                raise RuntimeError("--demo needs the fake GitHub (drop --real-github)")
            from .demo import serve_issues_to_the_sync

            serve_issues_to_the_sync(github)
            on_ready = _demo_loader(specs, ports, env, github, out)
        return await run_services(
            specs,
            env,
            cwd=cwd,
            out=out,
            startup_timeout=startup_timeout,
            banner=banner,
            on_ready=on_ready,
        )


def _demo_loader(
    specs: Sequence[ServiceSpec],
    ports: Mapping[str, int],
    env: Mapping[str, str],
    github: Any,
    out: Output,
) -> Callable[[], Awaitable[None]]:
    async def load() -> None:
        from . import demo

        http = next(s for s in specs if s.protocol == "http")
        organization = next(s for s in specs if s.module == "polar_organization")
        out.line(RUNNER, "demo: signing Codertocat in, then sending their GitHub deliveries")
        try:
            lines = await demo.load(
                http.address(ports[http.name]),
                f"{LOCAL}:{ports[organization.name]}",
                github,
                env,
                github_fixtures_dir() / "webhooks",
            )
        except (demo.DemoError, httpx.HTTPError) as err:
            out.line(RUNNER, f"demo: could not load the story: {err!r}")
            return
        for line in lines:
            out.line(RUNNER, line)

    return load


def _interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m polar_dev.cluster", description=__doc__)
    parser.add_argument("--services-root", type=Path, help="default: <repo>/services")
    parser.add_argument(
        "--data-dir", type=Path, help="embedded servers' data; default: <repo>/.dev"
    )
    parser.add_argument("--no-migrate", action="store_true", help="skip alembic upgrade head")
    github = parser.add_mutually_exclusive_group()
    github.add_argument(
        "--fake-github",
        action="store_true",
        help="serve sign-in, the App's API and recorded responses locally (the default "
        "unless POLAR_GITHUB_CLIENT_ID is set)",
    )
    github.add_argument(
        "--real-github", action="store_true", help="use GitHub as configured by POLAR_GITHUB_*"
    )
    parser.add_argument(
        "--demo", action="store_true", help="load a sample story and print commands to try"
    )
    parser.add_argument("--startup-timeout", type=float, default=60)
    args = parser.parse_args(argv)
    fake_github = args.fake_github or (
        not args.real_github and not os.environ.get("POLAR_GITHUB_CLIENT_ID")
    )

    root = repo_root()
    services_root = args.services_root or root / "services"
    specs = discover_services(services_root)
    if not specs:
        print(f"no [tool.polar.service] in {services_root}/*/pyproject.toml", file=sys.stderr)
        return 1
    out = Output([RUNNER, *(s.name for s in specs)])
    data_dir = args.data_dir.resolve() if args.data_dir else dev_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    # Until the event loop takes over signals: SIGTERM unwinds like Ctrl-C, so the embedded
    # servers started by `infra()` are stopped too.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with infra(data_dir=data_dir) as inf:
            if not args.no_migrate:
                out.line(RUNNER, "migrating the database to head")
                from polar_db.migrate import upgrade

                upgrade(inf.database_url)
            # Spans as JSON lines per process, for `make trace ID=...` (polar_dev.trace).
            env = {"POLAR_TRACE_DIR": str(data_dir / "traces"), **os.environ, **inf.env()}
            try:
                status = asyncio.run(
                    _serve(
                        specs,
                        env,
                        fake_github=fake_github,
                        demo=args.demo,
                        dev_env_file=data_dir / "env",
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
                if inf.embedded_postgres or inf.embedded_nats:
                    out.line(RUNNER, "stopping the embedded PostgreSQL and NATS")
        out.line(RUNNER, f"stopped (exit code {status})")
        return status
    except KeyboardInterrupt:
        return 130
    except RuntimeError as err:
        print(f"{RUNNER}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
