"""`make new-service` in a clone of this repository: the generated service builds, passes the
checks and its own tests, and removing it leaves the clone exactly as it was.

What runs on the generated service (the whole `make test` would take 7+ minutes): the
generated code is current (`make gen-check`), ruff and mypy --strict are clean on the new
packages and on what was edited, its tests pass (with the ownership and migration tests: its
schema, role and own history) (servicer through a real channel, bad input,
the event reaching NATS, the process starting and stopping), the models still match the
migrations, `make deploy-check` (without the simulated image build) accepts the new compose
service and manifests, and buf lint and breaking accept the new contract (when this checkout
has buf). The clone is of HEAD: commit a change to the generator
before this test can see it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from polar_dev.infra import Infra

ROOT = Path(__file__).resolve().parent.parent
NAME = "pledge"


def uv() -> str:
    """The uv running this test (`uv run` says where), else the repository's bootstrap."""
    found = os.environ.get("UV") or shutil.which("uv") or str(ROOT / ".tools/bin/uv")
    if not Path(found).exists():
        pytest.fail("uv not found: run the tests through `make pytest` (it installs uv)")
    return found


def run(cwd: Path, *command: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=400
    )
    assert result.returncode == 0, (
        f"`{' '.join(command)}` failed ({result.returncode}):\n"
        f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result.stdout


@pytest.mark.timeout(900)
def test_generate_check_test_and_remove_in_a_clone(tmp_path: Path, polar_infra: Infra) -> None:
    clone = tmp_path / "clone"
    run(ROOT, "git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone))
    # The clone's own venv (its packages installed from the clone), not this checkout's.
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
    }
    env |= polar_infra.env()
    make = ["make", "--no-print-directory", f"UV={uv()}"]

    before = run(clone, "git", "status", "--porcelain")
    run(clone, *make, "new-service", f"NAME={NAME}", env=env)
    service = clone / "services" / NAME
    assert (service / "src" / f"polar_{NAME}" / "servicer.py").is_file()
    assert (clone / "protos/polar" / NAME / "v1/events.proto").is_file()
    assert f'"polar-{NAME}"' in (clone / "pyproject.toml").read_text()
    assert f'name = "polar-{NAME}"' in (clone / "uv.lock").read_text()
    assert f"  {NAME}:\n" in (clone / "docker-compose.yml").read_text()
    assert f"POLAR_{NAME.upper()}_GRPC_PORT" in (clone / "README.md").read_text()
    # Its schema, role and history (decision 0021).
    assert (
        f'{NAME.upper()} = "{NAME}"'
        in (clone / "libs/polar_db/src/polar_db/models/base.py").read_text()
    )
    assert (clone / "libs/polar_db/src/polar_db/migrations" / NAME / f"0001_{NAME}.py").is_file()
    assert f"polar.{NAME}.v1.{NAME}_created" in (clone / "README.md").read_text()

    python = [uv(), "run", "--frozen"]
    run(clone, *make, "gen-check", env=env)
    run(clone, *python, "ruff", "check", ".", env=env)
    run(clone, *python, "ruff", "format", "--check", ".", env=env)
    mypy_path = ":".join(str(p) for p in sorted(clone.glob("*/*/src")))
    run(
        clone,
        *python,
        "mypy",
        f"services/{NAME}/src",
        f"services/{NAME}/tests",
        "libs/polar_db/src",
        env=env | {"MYPYPATH": mypy_path},
    )
    tests = [
        f"services/{NAME}",
        "libs/polar_db/tests/test_db_migrations.py",
        "tests/test_ownership.py",
        "tests/test_docs.py",
    ]
    output = run(
        clone,
        *python,
        "python",
        "-m",
        "polar_dev.test",
        *tests,
        "-q",
        "-p",
        "no:cacheprovider",
        env=env,
    )
    assert " passed" in output, output[-2000:]
    run(clone, *make, "deploy-check", "DEPLOY_CHECK_ARGS=--no-build", env=env)
    # buf lint and breaking when this checkout has buf (`make buf-lint` installs it with npm).
    buf = ROOT / ".tools/node_modules/.bin/buf"
    if buf.exists():
        run(clone / "protos", str(buf), "lint", env=env)
        run(clone / "protos", str(buf), "breaking", "--against", "baseline.binpb", env=env)

    run(clone, *make, "new-service", f"NAME={NAME}", "REMOVE=1", env=env)
    assert run(clone, "git", "status", "--porcelain") == before
    assert not service.exists()
