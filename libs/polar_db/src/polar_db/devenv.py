"""Operator tools find the local cluster: `.dev/env`, written by `make dev`.

(Here, in the lowest library every tool has, because polar_db.migrate is one of those tools.)

The embedded PostgreSQL and NATS of `make dev` listen on ports chosen on the first run. The
runner writes their URLs (and the other `POLAR_*` values a tool needs) to `<repo>/.dev/env`;
a tool calls `load_dev_env()` first, so that `python -m polar_kit.parked list` talks to the
cluster that runs here, not to whatever answers on a default port. Variables already set in
the environment always win. Deployments have no `.dev/env`; nothing changes there.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEV_ENV = Path(".dev") / "env"
DEV_ENV_VARIABLE = "POLAR_DEV_ENV"  # another file instead (a second cluster, the tests)


def find_dev_env(start: Path | None = None) -> Path | None:
    """$POLAR_DEV_ENV, else `.dev/env` in the working directory or the nearest folder above."""
    if configured := os.environ.get(DEV_ENV_VARIABLE):
        return Path(configured) if Path(configured).is_file() else None
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / DEV_ENV
        if candidate.is_file():
            return candidate
    return None


def parse_env_file(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        values[key.strip()] = value.strip()
    return values


def load_dev_env(start: Path | None = None) -> Path | None:
    """Sets the `POLAR_*` variables of `.dev/env` that the environment does not set.

    Returns the file used, or None when there is none.
    """
    path = find_dev_env(start)
    if path is None:
        return None
    for key, value in parse_env_file(path.read_text()).items():
        os.environ.setdefault(key, value)
    return path


def describe_source(variable: str, dev_env: Path | None) -> str:
    """Where `variable`'s value comes from, for a tool's 'talking to ...' line."""
    if variable not in os.environ:
        return f"default: {variable} is not set and there is no .dev/env"
    if (
        dev_env is not None
        and parse_env_file(dev_env.read_text()).get(variable) == os.environ[variable]
    ):
        return f"from {dev_env}"
    return f"from {variable}"


def announce(what: str, value: str, variable: str, dev_env: Path | None) -> None:
    """One line on stderr: which server a tool talks to, and why that one."""
    print(f"{what}: {value} ({describe_source(variable, dev_env)})", file=sys.stderr)
