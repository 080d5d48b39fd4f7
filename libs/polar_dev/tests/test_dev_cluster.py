"""The `make dev` runner against throwaway services (no repo services needed)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from polar_dev.infra import Infra, free_port

DUMMY = """
import os, signal, socket, sys, time
print("starting with", os.environ["POLAR_NATS_URL"], "and", os.environ["OTHER_PORT"], flush=True)
if os.environ.get("DUMMY_FAIL") == "{name}":
    sys.exit(3)
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(os.environ["{env}"])))
server.listen()
def bye(*_):
    print("bye", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
while True:
    time.sleep(1)
"""


def make_services(root: Path) -> dict[str, int]:
    ports = {}
    for name, env in (("alpha", "ALPHA_PORT"), ("gateway", "OTHER_PORT")):
        port = ports[name] = free_port()
        (root / "services" / name).mkdir(parents=True)
        (root / "services" / name / "pyproject.toml").write_text(
            f'[tool.polar.service]\nmodule = "dummy_{name}"\nprotocol = "grpc"\n'
            f'port-env = "{env}"\nport = {port}\n'
        )
        (root / "mods").mkdir(exist_ok=True)
        (root / "mods" / f"dummy_{name}.py").write_text(
            DUMMY.replace("{name}", name).replace("{env}", env)
        )
    return ports


def start(root: Path, infra: Infra, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "polar_dev.cluster",
            "--no-migrate",
            "--startup-timeout",
            "20",
            "--services-root",
            str(root / "services"),
            # Not the checkout's .dev/: its env file belongs to the developer's `make dev`.
            "--data-dir",
            str(root / "dev"),
        ],
        env={**os.environ, **infra.env(), "PYTHONPATH": str(root / "mods"), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(process: subprocess.Popen[str], marker: str, timeout: float = 30) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    raise AssertionError(f"{marker!r} not seen in:\n" + "\n".join(lines))


def test_runs_services_prefixed_and_stops_them_on_sigterm(
    tmp_path: Path, polar_infra: Infra
) -> None:
    ports = make_services(tmp_path)
    process = start(tmp_path, polar_infra)
    try:
        lines = read_until(process, "ready; Ctrl-C stops everything")
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    lines += out.splitlines()

    assert process.returncode == 0, "\n".join(lines)
    nats_url = polar_infra.nats_url
    assert f"alpha   | starting with {nats_url} and {ports['gateway']}" in lines
    assert f"gateway | starting with {nats_url} and {ports['gateway']}" in lines
    assert any(
        line.startswith("dev     | alpha") and f"127.0.0.1:{ports['alpha']}" in line
        for line in lines
    )
    assert any(line.startswith("dev     | nats") and nats_url in line for line in lines)
    assert "alpha   | bye" in lines
    assert "gateway | bye" in lines


def test_fails_when_a_service_dies_at_startup(tmp_path: Path, polar_infra: Infra) -> None:
    make_services(tmp_path)
    process = start(tmp_path, polar_infra, DUMMY_FAIL="gateway")
    out, _ = process.communicate(timeout=60)

    assert process.returncode == 1, out
    assert "gateway exited with code 3; stopping the cluster" in out
    assert "alpha   | bye" in out  # the healthy one was stopped too
