"""The repository stands on its own: nothing it tracks reaches outside the clone."""

from __future__ import annotations

import subprocess
from pathlib import Path

from polar_dev.paths import github_fixtures_dir

ROOT = Path(__file__).resolve().parent.parent
# Spelled in two pieces so this file does not match itself.
SIBLING = "../" + "shared"


def tracked_text_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.split(b"\0")
    return [ROOT / name.decode() for name in names if name]


def test_no_tracked_file_refers_to_a_sibling_folder() -> None:
    offenders = []
    for path in tracked_text_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        if SIBLING in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == [], f"files that need a folder beside the clone: {offenders}"


def test_github_fixtures_are_in_the_repository() -> None:
    fixtures = github_fixtures_dir().resolve()
    assert fixtures.is_relative_to(ROOT), fixtures
    assert (fixtures / "SOURCES.md").is_file()
    assert sorted(p.name for p in fixtures.glob("LICENSE*")), "upstream licence notices missing"
    assert len(list((fixtures / "webhooks").rglob("*.payload.json"))) > 50
