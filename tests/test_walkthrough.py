"""A newcomer's first hour, for real: `make demo` as a process tree, the README's walkthrough
run against it, then one Ctrl-C as a terminal sends it.

The cluster runs exactly as `make demo` runs it (`python -m polar_dev.cluster --demo`), with
its own embedded PostgreSQL and NATS in a temporary folder (not the session's servers: the
point is the runner's own lifecycle, infrastructure included) and free ports. Every README block
marked `<!-- walkthrough -->` runs in bash from the repository root, with the `USER_ID`,
`TOKEN` and `ISSUE_ID` the demo printed; the only rewriting is the addresses (the README says
127.0.0.1:8000 and :50051) and `.tools/bin/uv run python` → this interpreter. A block's
`# expect: TEXT` lines must appear in its output. A `walkthrough: background` block (the live
stream) runs until the blocks after it have run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from polar_db.devenv import parse_env_file
from polar_dev.infra import EmbeddedNats, EmbeddedPostgres
from polar_dev.paths import dev_dir
from polar_dev.services import discover_services

REPO = Path(__file__).resolve().parent.parent
READY = "ready; Ctrl-C stops everything"
# Every service the runner starts (a generated one too), by its [tool.polar.service] table.
SPECS = discover_services(REPO / "services")
SERVICES = tuple(s.name for s in SPECS)
BLOCK = re.compile(
    r"<!-- walkthrough(?P<background>: background)? -->\n```sh\n(?P<script>.*?)```", re.S
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Cluster:
    process: subprocess.Popen[str]
    data_dir: Path
    gateway: str
    organization: str
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, marker: str, within: float) -> None:
        deadline = time.monotonic() + within
        while not any(marker in line for line in self.lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{marker!r} not seen:\n" + "\n".join(self.lines[-80:]))
            time.sleep(0.2)

    def printed(self, name: str) -> str:
        for line in self.lines:
            _, _, text = line.partition("| ")
            if text.startswith(f"{name}="):
                return text.removeprefix(f"{name}=").strip()
        raise AssertionError(f"the demo printed no {name}=")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # Not under pytest's temporary root: a concurrent pytest run resets that to mode 0700, and
    # the embedded PostgreSQL (run as an unprivileged user when we are root) must reach it.
    data_dir = Path(tempfile.mkdtemp(prefix="test-walkthrough-", dir=dev_dir()))
    ports = {name: free_port() for name in SERVICES}
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("POLAR_DATABASE_URL", "POLAR_NATS_URL", "POLAR_NATS_PREFIX")
    }
    env |= {s.port_env: str(ports[s.name]) for s in SPECS} | {"NO_COLOR": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "polar_dev.cluster", "--demo", "--data-dir", str(data_dir)],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    running = Cluster(
        process,
        data_dir,
        gateway=f"http://127.0.0.1:{ports['gateway']}",
        organization=f"127.0.0.1:{ports['organization']}",
    )
    try:
        running.wait_for(READY, within=180)
        yield running
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            EmbeddedPostgres(data_dir / "postgres", 0).stop()
            EmbeddedNats(data_dir / "nats", 0).stop_leftover()
        shutil.rmtree(data_dir, ignore_errors=True)


def test_demo_prints_what_to_paste(cluster: Cluster) -> None:
    assert re.fullmatch(r"[0-9a-f-]{36}", cluster.printed("USER_ID"))
    assert re.fullmatch(r"[0-9a-f-]{36}", cluster.printed("ISSUE_ID"))
    assert cluster.printed("TOKEN").count(".") == 2  # a JWT
    assert any("/docs" in line for line in cluster.lines)


def readme_blocks() -> list[tuple[bool, str]]:
    text = (REPO / "README.md").read_text()
    return [(bool(m["background"]), m["script"]) for m in BLOCK.finditer(text)]


def localize(script: str, cluster: Cluster) -> str:
    return (
        script.replace("http://127.0.0.1:8000", cluster.gateway)
        .replace("127.0.0.1:50051", cluster.organization)
        .replace(".tools/bin/uv run python", sys.executable)
    )


def expectations(script: str) -> list[str]:
    return [
        line.split("# expect:", 1)[1].strip() for line in script.splitlines() if "# expect:" in line
    ]


def test_readme_walkthrough(cluster: Cluster) -> None:
    blocks = readme_blocks()
    assert len(blocks) >= 6, "the README's walkthrough blocks are gone"
    env = os.environ | {
        "USER_ID": cluster.printed("USER_ID"),
        "TOKEN": cluster.printed("TOKEN"),
        "ISSUE_ID": cluster.printed("ISSUE_ID"),
        "ORGANIZATION_ID": cluster.printed("ORGANIZATION_ID"),
        "POLAR_DEV_ENV": str(cluster.data_dir / "env"),
    }
    for key in ("POLAR_DATABASE_URL", "POLAR_NATS_URL", "POLAR_NATS_PREFIX"):
        env.pop(key, None)  # the tools must find the cluster through its env file
    background: list[tuple[subprocess.Popen[str], str]] = []
    for in_background, script in blocks:
        command = ["bash", "-euo", "pipefail", "-c", localize(script, cluster)]
        if in_background:
            proc = subprocess.Popen(
                command,
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            background.append((proc, script))
            time.sleep(1)  # connected before the next block acts
            continue
        done = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{script}\n→ exit {done.returncode}\n{output}"
        for expected in expectations(script):
            assert expected in output, f"{script}\n→ {expected!r} not in:\n{output}"
    time.sleep(2)  # the last events reach the stream
    for proc, script in background:
        os.killpg(proc.pid, signal.SIGTERM)  # bash and its curl
        output, _ = proc.communicate(timeout=10)
        for expected in expectations(script):
            assert expected in output, f"{script}\n→ {expected!r} not in:\n{output[-3000:]}"


def test_a_delivery_can_be_followed_through_the_logs(cluster: Cluster) -> None:
    """The gateway logs each accepted delivery with its id; each consumer that handles it
    logs the same id: `grep <delivery id>` over `make dev`'s output tells its story."""
    accepted = [
        re.search(r"delivery=([0-9a-f-]{36})", line)
        for line in cluster.lines
        if line.startswith("gateway") and "webhook accepted" in line
    ]
    ids = [m.group(1) for m in accepted if m]
    assert ids, "no 'webhook accepted' line"
    installation = next(
        i for i, m in zip(ids, accepted, strict=True) if m and "installation.created" in m.string
    )
    handled_by = {
        line.split()[0]
        for line in cluster.lines
        if "message handled" in line and f"message_id={installation}" in line
    }
    # Both services consume installations (the organization, its repositories).
    assert handled_by == {"organization", "repository"}, handled_by
    # Readable lines: no JSON, no colour codes, no traceback for anything that went well.
    assert not any("\x1b[" in line for line in cluster.lines)
    assert not any(line.partition("| ")[2].startswith("{") for line in cluster.lines)


def test_no_secret_or_token_in_any_service_log(cluster: Cluster) -> None:
    """Every secret the cluster runs with (from its env file), the user's session token and
    any GitHub token the fake handed out: none appears in a line a service logged, after the
    whole walkthrough (sign-in, webhooks, the sync, rewards, streams) has run. Only the
    runner's own lines print the token, on purpose (the demo's instructions)."""
    env = parse_env_file((cluster.data_dir / "env").read_text())
    secrets = [v for k, v in env.items() if "SECRET" in k or "KEYS" in k]
    assert len(secrets) >= 4
    secrets.append(cluster.printed("TOKEN"))
    service_lines = [line for line in cluster.lines if not line.startswith("dev ")]
    assert service_lines
    for line in service_lines:
        assert not any(secret in line for secret in secrets), line
        assert not re.search(r"gho_[A-Za-z0-9]{16,}", line), line


def test_one_ctrl_c_drains_every_service_then_stops_the_infrastructure(cluster: Cluster) -> None:
    # What a terminal does: SIGINT to the whole foreground process group. `uv run` (under
    # `make dev`) forwards a second SIGINT to the runner a moment later: still one Ctrl-C.
    os.killpg(cluster.process.pid, signal.SIGINT)
    time.sleep(0.3)
    cluster.process.send_signal(signal.SIGINT)
    assert cluster.process.wait(timeout=90) == 0, "\n".join(cluster.lines[-60:])
    time.sleep(0.5)  # the reader thread drains the pipe
    lines = cluster.lines

    def index(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    infra_stop = index("stopping the embedded PostgreSQL and NATS")
    for name in SERVICES:
        assert index(f"{name} stopped (exit code 0)") < infra_stop
    for name in ("organization", "repository"):  # each logged its own drain
        assert any(line.startswith(name) and "stopped" in line for line in lines), name
    assert any(line.startswith("gateway") and "Finished server process" in line for line in lines)
    assert not any("killing" in line for line in lines)
    # Nothing left behind: no postmaster, no nats-server.
    assert not (cluster.data_dir / "postgres" / "postmaster.pid").exists()
    pid = int((cluster.data_dir / "nats" / "nats-server.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
