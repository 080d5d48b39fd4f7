"""`.dev/env`: operator tools find the local cluster, and always say which server they use."""

import os
from pathlib import Path

import pytest
from polar_db.devenv import describe_source, find_dev_env, load_dev_env


def test_fills_only_what_the_environment_does_not_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".dev").mkdir()
    env_file = tmp_path / ".dev" / "env"
    env_file.write_text("# comment\nPOLAR_NATS_URL=nats://127.0.0.1:4999\nPOLAR_X=from-file\n")
    (tmp_path / "deeper").mkdir()
    monkeypatch.delenv("POLAR_DEV_ENV", raising=False)
    monkeypatch.delenv("POLAR_NATS_URL", raising=False)
    monkeypatch.setenv("POLAR_X", "from-environment")

    assert find_dev_env(tmp_path / "deeper") == env_file
    assert load_dev_env(tmp_path / "deeper") == env_file
    assert os.environ["POLAR_NATS_URL"] == "nats://127.0.0.1:4999"
    assert os.environ["POLAR_X"] == "from-environment"
    assert describe_source("POLAR_NATS_URL", env_file) == f"from {env_file}"
    assert describe_source("POLAR_X", env_file) == "from POLAR_X"


def test_says_so_when_it_falls_back_to_a_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POLAR_NATS_URL", raising=False)
    monkeypatch.setenv("POLAR_DEV_ENV", str(tmp_path / "missing"))
    assert load_dev_env(tmp_path) is None
    assert describe_source("POLAR_NATS_URL", None).startswith("default:")
