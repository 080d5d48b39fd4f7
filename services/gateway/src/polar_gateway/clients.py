"""The gateway's connections to the services: one long-lived grpc.aio channel per service.

Every call goes through `Clients.call`, which adds the deadline, the request id
(`x-request-id` metadata) and the gateway's signed credentials (polar_kit.grpc.auth), and
records metrics. UNAVAILABLE is retried with exponential
backoff by gRPC itself (retryPolicy in the channel's service config), within the deadline;
every method is safe to retry, CreateReward too: it carries a request id (AIP-155).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from polar.organization.v1 import organization_service_pb2, organization_service_pb2_grpc
from polar.repository.v1 import repository_service_pb2, repository_service_pb2_grpc
from polar.reward.v1 import reward_service_pb2, reward_service_pb2_grpc
from polar_kit.grpc.auth import GATEWAY, credentials
from polar_kit.metrics import init_grpc_metrics, rpc_metrics

from .context import REQUEST_ID_HEADER, current_request_id
from .settings import GatewaySettings

if TYPE_CHECKING:
    from polar.organization.v1.organization_service_pb2_grpc import OrganizationServiceAsyncStub
    from polar.repository.v1.repository_service_pb2_grpc import RepositoryServiceAsyncStub
    from polar.reward.v1.reward_service_pb2_grpc import RewardServiceAsyncStub

Req = TypeVar("Req")
Resp = TypeVar("Resp")

ORGANIZATION_SERVICE = organization_service_pb2.DESCRIPTOR.services_by_name[
    "OrganizationService"
].full_name
REPOSITORY_SERVICE = repository_service_pb2.DESCRIPTOR.services_by_name[
    "RepositoryService"
].full_name
REWARD_SERVICE = reward_service_pb2.DESCRIPTOR.services_by_name["RewardService"].full_name


def service_config(service: str, max_attempts: int) -> str:
    retried: dict[str, Any] = {"name": [{"service": service}, {"service": "grpc.health.v1.Health"}]}
    if max_attempts > 1:
        retried["retryPolicy"] = {
            "maxAttempts": max_attempts,
            "initialBackoff": "0.05s",
            "maxBackoff": "1s",
            "backoffMultiplier": 3,
            "retryableStatusCodes": ["UNAVAILABLE"],
        }
    configs = [retried]
    # round_robin: calls spread over every address the target resolves to (the replicas
    # behind a headless Service, or an `ipv4:a:1,b:2` list), not just the first one.
    return json.dumps({"loadBalancingConfig": [{"round_robin": {}}], "methodConfig": configs})


def open_channel(target: str, service: str, max_attempts: int) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.enable_retries", 1),
            ("grpc.service_config", service_config(service, max_attempts)),
            # Detect a dead peer on an idle channel instead of waiting for a call to hang.
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
        ],
    )


def _full_name(method: object) -> str:
    # grpc.aio's multicallable keeps its full name (/pkg.Service/Method) in `_method`.
    raw = getattr(method, "_method", b"")
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class Clients:
    """Channels and stubs of the services the gateway calls."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.deadline = settings.grpc_deadline_seconds
        # Refuses to start without real credentials outside development mode.
        self.credentials = credentials(GATEWAY, settings)
        attempts = settings.grpc_max_attempts
        self.organization_channel = open_channel(
            settings.organization_grpc_target, ORGANIZATION_SERVICE, attempts
        )
        self.repository_channel = open_channel(
            settings.repository_grpc_target, REPOSITORY_SERVICE, attempts
        )
        self.reward_channel = open_channel(settings.reward_grpc_target, REWARD_SERVICE, attempts)
        self.org: OrganizationServiceAsyncStub = (
            organization_service_pb2_grpc.OrganizationServiceStub(self.organization_channel)
        )
        self.repo: RepositoryServiceAsyncStub = repository_service_pb2_grpc.RepositoryServiceStub(
            self.repository_channel
        )
        self.reward: RewardServiceAsyncStub = reward_service_pb2_grpc.RewardServiceStub(
            self.reward_channel
        )
        init_grpc_metrics("client", [ORGANIZATION_SERVICE, REPOSITORY_SERVICE, REWARD_SERVICE])

    async def call(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline, not a sleep
    ) -> Resp:
        """One call with the deadline and the request id; raises grpc.aio.AioRpcError."""
        name = _full_name(method)
        measured = rpc_metrics("client", "unary", name)  # the services have unary RPCs only
        request_id = current_request_id()
        metadata = [self.credentials.metadata(name)]
        if request_id:
            metadata.append((REQUEST_ID_HEADER, request_id))
        measured.started.inc()
        measured.sent.inc()
        start = time.perf_counter()
        code = "CANCELLED"
        try:
            response = await method(request, timeout=timeout or self.deadline, metadata=metadata)
            code = "OK"
            measured.received.inc()
            return response
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            raise
        finally:
            measured.handled(code, time.perf_counter() - start)

    async def healthy(self) -> dict[str, bool]:
        """Standard gRPC health of each service (SERVING within a second)."""
        result = {}
        for name, channel, service in (
            ("organization", self.organization_channel, ORGANIZATION_SERVICE),
            ("repository", self.repository_channel, REPOSITORY_SERVICE),
            ("reward", self.reward_channel, REWARD_SERVICE),
        ):
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                answer = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                result[name] = answer.status == health_pb2.HealthCheckResponse.SERVING
            except grpc.aio.AioRpcError:
                result[name] = False
        return result

    async def close(self) -> None:
        await self.organization_channel.close()
        await self.repository_channel.close()
        await self.reward_channel.close()
