"""Operations: probes, metrics, OpenAPI, CORS, error shape, deadlines, retries, request ids."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from unittest import mock

import grpc
import grpc.aio
import httpx
import pytest
from gateway_support import SignIn, StartGateway, metrics_text
from polar.organization.v1 import organization_pb2
from polar.organization.v1 import organization_service_pb2 as pb
from polar.organization.v1 import organization_service_pb2_grpc as pb_grpc
from polar.repository.v1 import repository_pb2
from polar.repository.v1 import repository_service_pb2 as repo_pb
from polar.repository.v1 import repository_service_pb2_grpc as repo_grpc
from polar_dev.infra import free_port
from polar_gateway.clients import REPOSITORY_SERVICE, open_channel
from polar_gateway.sessions import TokenSigner
from polar_gateway.settings import GatewaySettings
from polar_kit.grpc.status import rich_status


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_when_everything_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "ready": True,
        "checks": {
            "organization": True,
            "repository": True,
            "reward": True,
            "nats": True,
            "sessions": True,
            "stream": True,
        },
    }


async def test_readyz_and_routes_when_a_service_is_down(
    start_gateway: StartGateway, gateway_settings: GatewaySettings, sign_in: SignIn
) -> None:
    member = await sign_in()
    dead = f"127.0.0.1:{free_port()}"
    async with (
        start_gateway(organization_grpc_target=dead, grpc_deadline_seconds=1) as cut_off,
        httpx.AsyncClient(base_url=cut_off.url) as http,
    ):
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {
            "organization": False,
            "repository": True,
            "reward": True,
            "nats": True,
            "sessions": True,
            "stream": True,
        }
        response = await http.get("/api/v2/users/me", headers=member.headers)
        assert response.status_code == 503
        assert response.headers["retry-after"]
        error = response.json()["error"]
        assert error["code"] == "unavailable"
        assert dead not in error["message"]  # no internal addresses in answers


async def test_metrics(client: httpx.AsyncClient, sign_in: SignIn) -> None:
    member = await sign_in()
    await client.get("/api/v2/users/me", headers=member.headers)
    await client.get("/api/v2/organizations/not-a-uuid", headers=member.headers)
    text = await metrics_text()
    assert (
        'polar_gateway_http_requests_total{method="GET",route="/api/v2/users/me",status="200"}'
        in text
    )
    assert 'route="/api/v2/organizations/{id}",status="422"' in text
    assert "polar_gateway_http_request_duration_seconds_bucket" in text
    assert 'grpc_client_handled_total{grpc_code="OK",grpc_method="GetUser"' in text


async def test_openapi_document(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v2/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/api/v2/users/me",
        "/api/v2/user/organizations",
        "/api/v2/integrations/github/installations",
        "/api/v2/integrations/github/webhook",
        "/api/v2/integrations/github/authorize",
        "/api/v2/integrations/github/callback",
        "/api/v2/issues/{platform}/{org}/{repo}",
        "/api/v2/pull_requests/{platform}/{org}/{repo}",
        "/api/v2/rewards",
        "/api/v2/rewards/{platform}/{org}/{repo}",
        "/api/v2/organizations/{id}",
        "/api/v2/repositories/{id}",
        "/api/v2/stream",
    ):
        assert path in paths, path
    assert set(paths["/api/v2/users/me"]) == {"get", "patch"}


async def test_unknown_routes_and_methods_have_the_error_shape(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v2/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert missing.json()["error"]["request_id"] == missing.headers["x-request-id"]
    wrong = await client.put("/api/v2/rewards")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


async def test_cors(client: httpx.AsyncClient) -> None:
    preflight = await client.options(
        "/api/v2/users/me",
        headers={
            "Origin": "http://app.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://app.example"
    assert preflight.headers["access-control-allow-credentials"] == "true"
    other = await client.options(
        "/api/v2/users/me",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in other.headers


# --- a scripted organization service: retries, deadlines, metadata -----------------------------


class Scripted(pb_grpc.OrganizationServiceServicer):
    def __init__(self) -> None:
        self.failures = 0  # the next calls that answer UNAVAILABLE
        self.delay = 0.0
        self.calls: list[dict[str, Any]] = []
        self.trailers: tuple[tuple[str, str | bytes], ...] = ()

    async def GetUser(
        self, request: pb.GetUserRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetUserResponse:
        metadata = dict(context.invocation_metadata() or ())
        self.calls.append({"metadata": metadata, "deadline": context.time_remaining()})
        if self.failures:
            self.failures -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up", self.trailers)
        await asyncio.sleep(self.delay)
        return pb.GetUserResponse(user=organization_pb2.User(id=request.id, username="scripted"))


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Scripted, str]]:
    server = grpc.aio.server()
    servicer = Scripted()  # type: ignore[abstract]  # only GetUser is scripted
    pb_grpc.add_OrganizationServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, f"127.0.0.1:{port}"
    await server.stop(None)


async def test_unavailable_is_retried_and_every_call_has_a_deadline_and_the_request_id(
    start_gateway: StartGateway,
    gateway_settings: GatewaySettings,
    scripted: tuple[Scripted, str],
) -> None:
    servicer, target = scripted
    servicer.failures = 2
    token, _ = TokenSigner(gateway_settings).issue_session("00000000-0000-4000-8000-000000000001")
    async with (
        start_gateway(organization_grpc_target=target, grpc_deadline_seconds=3) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        response = await http.get(
            "/api/v2/users/me",
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": "req-42"},
        )
    assert response.status_code == 200, response.text
    assert response.json()["username"] == "scripted"
    assert len(servicer.calls) == 3  # two UNAVAILABLE, then the answer
    for call in servicer.calls:
        assert call["metadata"]["x-request-id"] == "req-42"
        assert 0 < call["deadline"] <= 3.1  # (grpc rounds the remaining time up a little)


async def test_unavailable_says_when_to_retry_as_the_service_asks(
    start_gateway: StartGateway,
    gateway_settings: GatewaySettings,
    scripted: tuple[Scripted, str],
) -> None:
    """A service's RetryInfo (polar_kit.grpc.status) becomes Retry-After and
    retry_after_seconds, once the gateway's own retries are spent."""
    servicer, target = scripted
    servicer.failures = 10
    with mock.patch("polar_kit.grpc.status.RETRY_DELAY_SECONDS", 7):
        servicer.trailers = (
            rich_status(grpc.StatusCode.UNAVAILABLE, "warming up", domain="polar.test.v1"),
        )
    token, _ = TokenSigner(gateway_settings).issue_session("00000000-0000-4000-8000-000000000003")
    async with (
        start_gateway(organization_grpc_target=target, grpc_deadline_seconds=3) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        response = await http.get("/api/v2/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert response.json()["error"]["retry_after_seconds"] == 7
    assert "reason" not in response.json()["error"]  # a failing service's details stay inside


async def test_a_slow_service_is_503_at_the_deadline(
    start_gateway: StartGateway,
    gateway_settings: GatewaySettings,
    scripted: tuple[Scripted, str],
) -> None:
    servicer, target = scripted
    servicer.delay = 5
    token, _ = TokenSigner(gateway_settings).issue_session("00000000-0000-4000-8000-000000000002")
    async with (
        start_gateway(organization_grpc_target=target, grpc_deadline_seconds=0.3) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        started = time.monotonic()
        response = await http.get("/api/v2/users/me", headers={"Authorization": f"Bearer {token}"})
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "deadline_exceeded"
    assert elapsed < 2


async def test_docs_work_offline_and_offer_authorize(client: httpx.AsyncClient) -> None:
    # /docs leads to the recommended version's UI.
    start = await client.get("/docs")
    assert start.status_code == 307
    assert start.headers["location"] == "/api/v2/docs"
    for version in ("v2", "v1"):
        page = await client.get(f"/api/{version}/docs")
        assert page.status_code == 200
        # Every asset from this origin: no CDN, so the page works without a network.
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sources, page.text
        assert all(s.startswith("/") for s in sources), sources
        for source in sources:
            assert (await client.get(source)).status_code == 200, source

    document = (await client.get("/api/v2/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["bearer"]["description"],
    }
    assert schemes["session"]["in"] == "cookie"
    me = document["paths"]["/api/v2/users/me"]["get"]
    assert me["security"] == [{"bearer": []}, {"session": []}]
    assert "security" not in document["paths"]["/api/v2/integrations/github/webhook"]["post"]
    # v2's validation errors are documented in v2's own error shape.
    invalid = document["paths"]["/api/v2/organizations/{id}"]["get"]["responses"]["422"]
    assert invalid["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorResponse"
    }
    assert "HTTPValidationError" not in document["components"]["schemas"]


class FlakyRewards(repo_grpc.RepositoryServiceServicer):
    """CreateReward answers UNAVAILABLE the first time (as a service restarting would)."""

    def __init__(self) -> None:
        self.request_ids: list[str] = []

    async def CreateReward(
        self, request: repo_pb.CreateRewardRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> repo_pb.CreateRewardResponse:
        self.request_ids.append(request.request_id)
        if len(self.request_ids) == 1:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        return repo_pb.CreateRewardResponse(reward=repository_pb2.Reward(id="r1"))


async def test_create_reward_is_retried_with_the_same_request_id() -> None:
    """The channel retries CreateReward like any call: the request id it carries (AIP-155)
    makes the repository service return the first reward rather than create a second
    (services/repository tests: test_create_reward_retried_with_its_request_id...)."""
    server = grpc.aio.server()
    servicer = FlakyRewards()  # type: ignore[abstract]  # only CreateReward is scripted
    repo_grpc.add_RepositoryServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = open_channel(f"127.0.0.1:{port}", REPOSITORY_SERVICE, max_attempts=3)
    try:
        stub = repo_grpc.RepositoryServiceStub(channel)
        request_id = "6b0e0a4e-5b8e-4a57-8f0e-0f4f6b4a1c11"
        response = await stub.CreateReward(
            repo_pb.CreateRewardRequest(issue_id="i", request_id=request_id), timeout=5
        )
    finally:
        await channel.close()
        await server.stop(None)
    assert response.reward.id == "r1"
    assert servicer.request_ids == [request_id, request_id]
