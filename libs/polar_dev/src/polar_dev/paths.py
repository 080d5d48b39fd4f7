"""Where things live: the workspace root, its `.dev/` data folder, the GitHub fixtures."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

GITHUB_FIXTURES_ENV = "POLAR_GITHUB_FIXTURES"
BUNDLED_GITHUB_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "github"


def _is_workspace_root(directory: Path) -> bool:
    pyproject = directory / "pyproject.toml"
    if not pyproject.is_file():
        return False
    data = tomllib.loads(pyproject.read_text())
    return "workspace" in data.get("tool", {}).get("uv", {})


def repo_root() -> Path:
    """The uv workspace root: searched upwards from the working directory, then from this file."""
    for start in (Path.cwd().resolve(), Path(__file__).resolve().parent):
        for directory in (start, *start.parents):
            if _is_workspace_root(directory):
                return directory
    raise RuntimeError("cannot find the workspace root (a pyproject.toml with [tool.uv.workspace])")


def dev_dir() -> Path:
    """`<repo>/.dev`: embedded PostgreSQL/NATS data (git-ignored), kept across `make dev` runs."""
    path = repo_root() / ".dev"
    path.mkdir(exist_ok=True)
    return path


def github_fixtures_dir() -> Path:
    """Recorded GitHub payloads: $POLAR_GITHUB_FIXTURES, else the copy shipped in this package
    (`polar_dev/fixtures/github`, see its SOURCES.md for provenance and licences)."""
    configured = os.environ.get(GITHUB_FIXTURES_ENV)
    path = Path(configured) if configured else BUNDLED_GITHUB_FIXTURES
    if not (path / "rest").is_dir():
        raise FileNotFoundError(
            f"GitHub fixtures not found at {path} (expected a rest/ folder there); "
            f"unset {GITHUB_FIXTURES_ENV} to use the bundled copy"
        )
    return path
