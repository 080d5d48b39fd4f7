"""`python -m polar_dev.test [pytest args]`: PostgreSQL + NATS up, then pytest, with its exit code.

Servers come from POLAR_DATABASE_URL / POLAR_NATS_URL when set, else embedded throwaway ones.
pytest's own code is kept as is, including 5 (no tests collected): a run that tests nothing
must not pass.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import NoReturn

from .infra import infra


def _interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: Sequence[str]) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # unwind so embedded servers are stopped
    try:
        with infra(ephemeral=True) as servers:
            kind = "embedded" if servers.embedded_postgres or servers.embedded_nats else "given"
            print(
                f"polar_dev.test: {kind} {servers.database_url} {servers.nats_url}", file=sys.stderr
            )
            # The tests start service processes (fork + exec) from a process that uses gRPC:
            # with gRPC's fork support on, grpcio's post-fork handler can crash the child
            # before its exec (grpc/grpc#43055, EBADF on epoll). Our processes never fork to
            # keep using gRPC, so the support is off for the test run.
            env = {**os.environ, **servers.env(), "GRPC_ENABLE_FORK_SUPPORT": "false"}
            process = subprocess.Popen([sys.executable, "-m", "pytest", *argv], env=env)
            try:
                return process.wait()
            except KeyboardInterrupt:
                # Ctrl-C reached pytest too (same process group); SIGTERM did not: pass it on.
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(30)
                except (subprocess.TimeoutExpired, KeyboardInterrupt):
                    process.kill()
                return 130
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
