"""Issue 10 (secure by default), the gateway's side: each test replays an attack of the review
and checks that it no longer succeeds.

Secrets fail closed; an empty webhook secret verifies nothing; CORS "*" is refused; private
repository names cannot be probed; the session cookie is `__Host-` and Secure outside dev
mode; authenticated answers are not cached; /metrics and the docs are off the public port;
slow or oversized requests are cut off; webhook bodies in memory are bounded; sign-in, writes
and failing webhooks are rate limited per client.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from gateway_support import (
    CLIENT_ID,
    GitHubWorld,
    Install,
    SignIn,
    StartGateway,
    metrics_text,
    sign,
)
from polar.repository.v1 import repository_service_pb2 as repo_pb
from polar_dev.fake_github import FakeGitHub
from polar_gateway import ratelimit
from polar_gateway.app import create_app
from polar_gateway.settings import DEV_SESSION_SECRET, DEV_WEBHOOK_SECRET, GatewaySettings
from polar_kit.secrets import InsecureSecretError
from pydantic import ValidationError

if TYPE_CHECKING:
    from polar.repository.v1.repository_service_pb2_grpc import RepositoryServiceAsyncStub

WEBHOOK = "/api/v2/integrations/github/webhook"
REAL_SECRET = secrets.token_hex(32)


# --- 1. secrets fail closed ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("session_secret", "", "is not set"),
        ("session_secret", "short-but-not-empty", "shorter than 32 bytes"),
        ("session_secret", DEV_SESSION_SECRET, "is not set"),
        ("session_secret", "compose-local-session-secret-not-for-production", "published"),
        ("github_webhook_secret", "", "is not set"),
        ("github_webhook_secret", DEV_WEBHOOK_SECRET, "is not set"),
        ("github_webhook_secret", "test-webhook-secret", "published"),
        ("github_webhook_secret", "compose-local-webhook-secret", "published"),
    ],
)
def test_a_deployment_refuses_missing_short_or_published_secrets(
    name: str, value: str, problem: str
) -> None:
    values = {"session_secret": REAL_SECRET, "github_webhook_secret": REAL_SECRET, name: value}
    settings = GatewaySettings.model_validate({"dev_mode": False, **values})
    with pytest.raises(InsecureSecretError, match=problem):
        create_app(settings)


def test_the_gateway_process_exits_with_a_clear_error_without_secrets() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLAR_")}
    result = subprocess.run(
        [sys.executable, "-m", "polar_gateway"],
        env=env | {"POLAR_GATEWAY_HTTP_PORT": "0"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "POLAR_SESSION_SECRET is not set" in result.stderr
    assert "openssl rand -hex 32" in result.stderr


async def test_an_empty_webhook_secret_verifies_nothing(start_gateway: StartGateway) -> None:
    # The review forged installation.created signed with the empty key.
    body = b'{"action": "created", "installation": {"id": 1}}'
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "installation",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, secret=""),
    }
    async with (
        start_gateway(github_webhook_secret="") as gateway,  # dev mode: it starts
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        response = await http.post(WEBHOOK, content=body, headers=headers)
    assert response.status_code == 401


# --- 13. CORS ---------------------------------------------------------------------------------


def test_cors_star_with_credentials_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match='"\\*" is refused'):
        GatewaySettings.model_validate({"cors_origins": ["*"]})


async def test_cors_echoes_only_the_listed_origin(client: httpx.AsyncClient) -> None:
    for origin, allowed in (("http://app.example", True), ("https://evil.example", False)):
        response = await client.get("/api/v2/users/me", headers={"Origin": origin})
        echoed = response.headers.get("access-control-allow-origin")
        assert (echoed == origin) is allowed, (origin, echoed)


# --- 11. private repositories cannot be probed ------------------------------------------------


async def test_a_non_member_cannot_tell_a_private_repository_from_a_missing_one(
    client: httpx.AsyncClient,
    sign_in: SignIn,
    install: Install,
    repo_stub: RepositoryServiceAsyncStub,
) -> None:
    owner, prober = await sign_in(), await sign_in()
    org = await install(owner)
    created = await repo_stub.BatchUpsertRepositories(
        repo_pb.BatchUpsertRepositoriesRequest(
            repositories=[
                repo_pb.RepositoryInput(
                    organization_id=org.id,
                    external_id=int(uuid.uuid4().int % 2**40),
                    name="secret-plans",
                    is_private=True,
                )
            ]
        )
    )
    [private] = created.repositories
    answers = []
    for path in (
        f"/api/v2/issues/github/{org.name}/secret-plans",
        f"/api/v2/issues/github/{org.name}/no-such-repository",
        f"/api/v2/rewards/github/{org.name}/secret-plans",
        f"/api/v2/repositories/{private.id}",
        f"/api/v2/repositories/{uuid.uuid4()}",
    ):
        response = await client.get(path, headers=prober.headers)
        error = response.json()["error"]
        answers.append((response.status_code, error["code"], error["message"]))
    assert set(answers) == {(404, "not_found", "repository not found")}
    # The owner still reads it.
    response = await client.get(f"/api/v2/repositories/{private.id}", headers=owner.headers)
    assert response.status_code == 200


# --- 12. cookie, headers, operations endpoints ------------------------------------------------


async def test_outside_dev_mode_the_session_cookie_is_host_prefixed_and_secure(
    start_gateway: StartGateway, github: FakeGitHub, world: GitHubWorld
) -> None:
    user = world.new_user()
    async with (
        start_gateway(dev_mode=False, github_webhook_secret=REAL_SECRET) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        # Over plain HTTP here, so the Secure state cookie is handed back by hand.
        authorize = await http.get("/api/v2/integrations/github/authorize")
        state_cookie = authorize.headers["set-cookie"].split(";")[0]
        assert "; secure" in authorize.headers["set-cookie"].lower()
        state = parse_qs(urlsplit(authorize.headers["location"]).query)["state"][0]
        response = await http.get(
            "/api/v2/integrations/github/callback",
            params={"code": user.code, "state": state},
            headers={"Cookie": state_cookie},
        )
        assert response.status_code == 303, response.text
        [cookie] = [c for c in response.headers.get_list("set-cookie") if "polar=" in c]
        attributes = [a.strip().lower() for a in cookie.split(";")]
        assert cookie.startswith("__Host-polar=")
        assert {"secure", "httponly", "path=/"} <= set(attributes)
        assert not any(a.startswith("domain=") for a in attributes)
        assert response.headers["strict-transport-security"] == "max-age=31536000"
        # The docs are off outside dev mode.
        assert (await http.get("/api/v2/docs")).status_code == 404
        assert (await http.get("/api/v2/openapi.json")).status_code == 404


async def test_authenticated_answers_are_not_cached_nor_sniffed(
    client: httpx.AsyncClient, sign_in: SignIn
) -> None:
    member = await sign_in()
    for path in ("/api/v2/users/me", "/api/v2/user/organizations", "/api/v2/nothing-here"):
        response = await client.get(path, headers=member.headers)
        assert response.headers["cache-control"] == "no-store", path
        assert response.headers["x-content-type-options"] == "nosniff", path


async def test_metrics_are_not_on_the_public_port(client: httpx.AsyncClient) -> None:
    assert (await client.get("/metrics")).status_code == 404
    assert "polar_gateway_http_requests_total" in await metrics_text()


async def test_docs_are_a_setting(client: httpx.AsyncClient, start_gateway: StartGateway) -> None:
    assert (await client.get("/api/v2/docs")).status_code == 200  # dev mode: on
    async with (
        start_gateway(api_docs=False) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        assert (await http.get("/api/v2/docs")).status_code == 404
        assert (await http.get("/api/v2/openapi.json")).status_code == 404


# --- 9. slow and large requests, bounded webhook bodies --------------------------------------


async def _raw(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """What the server sent before closing the connection (fails if it stays open)."""
    async with asyncio.timeout(seconds):
        return await reader.read()


async def test_a_request_head_trickled_slowly_is_cut_off(start_gateway: StartGateway) -> None:
    async with start_gateway(http_header_timeout_seconds=1) as gateway:
        reader, writer = await _raw(gateway.url)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
        await writer.drain()
        answer = await _closed_within(reader, 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408")
        # An idle connection (no byte at all) is closed too.
        reader, writer = await _raw(gateway.url)
        assert (await _closed_within(reader, 5)).startswith(b"HTTP/1.1 408")
        writer.close()


async def test_a_body_trickled_slowly_is_cut_off(start_gateway: StartGateway) -> None:
    async with start_gateway(http_body_timeout_seconds=1) as gateway:
        reader, writer = await _raw(gateway.url)
        writer.write(
            b"POST /api/v2/integrations/github/webhook HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        await writer.drain()

        async def trickle() -> None:
            for _ in range(20):
                await asyncio.sleep(0.2)
                writer.write(b" ")
                await writer.drain()

        trickling = asyncio.create_task(trickle())
        try:
            answer = await _closed_within(reader, 5)
        finally:
            trickling.cancel()
            writer.close()
        assert answer.startswith(b"HTTP/1.1 408")


async def test_an_oversized_request_head_is_431(start_gateway: StartGateway) -> None:
    async with (
        start_gateway(http_max_header_bytes=4096) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        response = await http.get("/healthz", headers={"X-Big": "a" * 10_000})
        assert response.status_code == 431
        assert (await http.get("/healthz")).status_code == 200


async def test_webhook_bodies_in_memory_are_bounded(start_gateway: StartGateway) -> None:
    async with (
        start_gateway(webhook_max_concurrent_bodies=1, webhook_publish_timeout_seconds=0.5) as gw,
        httpx.AsyncClient(base_url=gw.url) as http,
    ):
        # One unsigned delivery holds the only slot (its body is still coming)...
        _, writer = await _raw(gw.url)
        writer.write(
            b"POST /api/v2/integrations/github/webhook HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
        )
        await writer.drain()
        await asyncio.sleep(0.2)
        # ...so the next one waits, then is told to come back.
        body = b"{}"
        response = await http.post(
            WEBHOOK,
            content=body,
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(body)},
        )
        assert response.status_code == 503
        assert response.headers["retry-after"]
        writer.close()
        await asyncio.sleep(0.2)
        # The slot is free again once the first connection went.
        response = await http.post(
            WEBHOOK,
            content=body,
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=0"},
        )
        assert response.status_code == 401


# --- 9. rate limits ---------------------------------------------------------------------------


class StillClock:
    """The rate limiter's clock, standing still unless a test moves it: however slow the
    requests (a loaded machine), no token comes back on its own between them."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def limiter_clock(monkeypatch: pytest.MonkeyPatch) -> StillClock:
    clock = StillClock()
    monkeypatch.setattr(ratelimit, "clock", clock)
    return clock


@pytest.mark.usefixtures("limiter_clock")
async def test_sign_in_is_rate_limited_per_client(start_gateway: StartGateway) -> None:
    async with (
        start_gateway(rate_limit_sign_in_per_minute=3, github_client_id=CLIENT_ID) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        statuses = [
            (await http.get("/api/v2/integrations/github/authorize")).status_code for _ in range(4)
        ]
        assert statuses == [307, 307, 307, 429]
        response = await http.get("/api/v2/integrations/github/callback")
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["error"]["code"] == "resource_exhausted"
        # Reads are not limited.
        assert (await http.get("/healthz")).status_code == 200


async def test_writes_are_rate_limited_per_client(
    start_gateway: StartGateway, sign_in: SignIn, limiter_clock: StillClock
) -> None:
    member = await sign_in()
    async with (
        start_gateway(rate_limit_write_per_minute=2) as gateway,
        httpx.AsyncClient(base_url=gateway.url, headers=member.headers, timeout=30) as http,
    ):

        async def write() -> httpx.Response:
            return await http.patch("/api/v2/users/me", json={})

        statuses = [(await write()).status_code for _ in range(2)]
        refused = await write()
        assert [*statuses, refused.status_code] == [200, 200, 429]
        assert refused.headers["retry-after"] == "30"  # 2 a minute: one every 30 s
        assert (await http.get("/api/v2/users/me")).status_code == 200
        limiter_clock.now += 30  # one token back, one only
        assert [(await write()).status_code for _ in range(2)] == [200, 429]


@pytest.mark.usefixtures("limiter_clock")
async def test_failing_webhooks_are_rate_limited_signed_ones_never(
    start_gateway: StartGateway,
) -> None:
    def headers(body: bytes, signature: str) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "X-GitHub-Event": "ping",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": signature,
        }

    body = b'{"zen": "hi"}'
    async with (
        start_gateway(rate_limit_webhook_failures_per_minute=2) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        for _ in range(5):  # accepted deliveries never count
            response = await http.post(WEBHOOK, content=body, headers=headers(body, sign(body)))
            assert response.status_code == 200
        unsigned = [
            (await http.post(WEBHOOK, content=body, headers=headers(body, "sha256=0"))).status_code
            for _ in range(3)
        ]
        assert unsigned == [401, 401, 429]
        # Once limited, the client's deliveries wait (429 before the body is read).
        response = await http.post(WEBHOOK, content=body, headers=headers(body, sign(body)))
        assert response.status_code == 429
        assert response.headers["retry-after"]
