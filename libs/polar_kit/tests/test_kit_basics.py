from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from datetime import UTC, datetime

import pytest
from nats.js import JetStreamContext
from polar_kit import paging
from polar_kit.errors import InvalidArgument
from polar_kit.nats import EVENTS, ensure_streams, stream_prefix, strip_prefix, subject_matches
from polar_kit.settings import OrganizationUpstream, RewardUpstream, ServiceSettings


def test_settings_read_polar_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLAR_NATS_PREFIX", "t1.")
    monkeypatch.setenv("POLAR_CONSUMER_MAX_ATTEMPTS", "7")
    settings = ServiceSettings()
    assert settings.nats_prefix == "t1."
    assert settings.consumer_max_attempts == 7
    assert all(f.description for f in ServiceSettings.model_fields.values())


def test_upstream_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    """A service's target: POLAR_<SERVICE>_GRPC_TARGET, else 127.0.0.1 on its port."""

    class Caller(OrganizationUpstream, RewardUpstream):
        pass

    for service in ("ORGANIZATION", "REWARD"):
        for setting in ("TARGET", "PORT"):
            monkeypatch.delenv(f"POLAR_{service}_GRPC_{setting}", raising=False)
    monkeypatch.delenv("POLAR_GRPC_DEADLINE_SECONDS", raising=False)
    assert Caller().organization_grpc_target == "127.0.0.1:50051"
    assert Caller().reward_grpc_target == "127.0.0.1:50053"
    assert Caller().grpc_deadline_seconds == 5
    monkeypatch.setenv("POLAR_ORGANIZATION_GRPC_TARGET", "organization:6000")
    monkeypatch.setenv("POLAR_REWARD_GRPC_PORT", "50099")
    monkeypatch.setenv("POLAR_GRPC_DEADLINE_SECONDS", "2.5")
    settings = Caller()
    assert settings.organization_grpc_target == "organization:6000"
    assert settings.reward_grpc_target == "127.0.0.1:50099"
    assert settings.grpc_deadline_seconds == 2.5
    assert all(f.description for f in Caller.model_fields.values())


def test_prefixes() -> None:
    settings = ServiceSettings(nats_prefix="t3f9a.")
    assert stream_prefix("t3f9a.") == "T3F9A_"
    assert EVENTS.stream_name("t3f9a.") == "T3F9A_POLAR_EVENTS"
    assert EVENTS.config(settings).subjects == ["t3f9a.polar.>"]
    assert strip_prefix(settings, "t3f9a.polar.x") == "polar.x"


@pytest.mark.parametrize(
    ("pattern", "subject", "matches"),
    [
        ("a.b", "a.b", True),
        ("a.*", "a.b", True),
        ("a.*", "a.b.c", False),
        ("a.>", "a.b.c", True),
        ("a.>", "a", False),
        ("a.*.c", "a.b.c", True),
        ("a.b", "a.c", False),
    ],
)
def test_subject_matches(pattern: str, subject: str, matches: bool) -> None:
    assert subject_matches(pattern, subject) is matches


@pytest.mark.asyncio(loop_scope="session")
async def test_ensure_streams_is_idempotent(
    js: JetStreamContext, kit_settings: ServiceSettings
) -> None:
    await ensure_streams(js, kit_settings)
    await ensure_streams(js, kit_settings)
    info = await js.stream_info(EVENTS.stream_name(kit_settings.nats_prefix))
    assert info.config.duplicate_window == kit_settings.nats_duplicate_window_seconds


@pytest.mark.asyncio(loop_scope="session")
async def test_logs_are_json_with_context() -> None:
    script = """
import structlog
from polar_kit.logging import configure_logging
configure_logging("INFO", json=True)
with structlog.contextvars.bound_contextvars(request_id="r1"):
    structlog.get_logger("x").info("hello", n=1)
    import logging; logging.getLogger("lib").warning("from stdlib")
"""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    first, second = (json.loads(line) for line in out.decode().splitlines())
    assert first["event"] == "hello"
    assert first["request_id"] == "r1"
    assert first["level"] == "info"
    assert first["n"] == 1
    assert "timestamp" in first
    assert second["event"] == "from stdlib"
    assert second["request_id"] == "r1"


SECRET_LOCAL_SCRIPT = """
import structlog
from polar_kit.logging import configure_logging
configure_logging("INFO", json={json})
def sign_in(access_token):
    raise RuntimeError("boom")
try:
    sign_in("gho_secret_in_a_frame_local")
except RuntimeError:
    structlog.get_logger("x").exception("sign-in failed")
"""


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("as_json", ["True", "False", "None"])
async def test_tracebacks_never_show_frame_locals(as_json: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SECRET_LOCAL_SCRIPT.replace("{json}", as_json),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1"},
    )
    out, _ = await proc.communicate()
    text = out.decode()
    assert "RuntimeError" in text  # the traceback is there...
    assert "boom" in text
    assert "gho_secret_in_a_frame_local" not in text  # ...but not the locals
    assert "\x1b[" not in text  # no colour codes when stdout is not a terminal
    if as_json != "False":  # JSON, also by default when stdout is a pipe
        assert json.loads(text.splitlines()[0])["event"] == "sign-in failed"
    else:
        assert "sign-in failed" in text.splitlines()[0]
        assert not text.startswith("{")


def test_page_tokens_round_trip_and_refuse_what_they_did_not_make() -> None:
    key = (datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), uuid.uuid4(), "name", 42)
    token = paging.encode_token(key)
    kinds = (paging.timestamp, paging.uuid_, paging.text, paging.positive_int32)
    assert paging.decode_token(token, *kinds) == key
    assert paging.decode_token("", *kinds) is None
    for bad in ("%%%", paging.encode_token(key[:3]), paging.encode_token([2**31])):
        with pytest.raises(InvalidArgument, match="page_token"):
            paging.decode_token(bad, *kinds)
    page = paging.page([1, 2, 3], 2, lambda n: (n,))
    assert list(page.items) == [1, 2]
    assert paging.decode_token(page.next_page_token, paging.positive_int32) == (2,)
    assert paging.page([1, 2], 2, lambda n: (n,)).next_page_token == ""
