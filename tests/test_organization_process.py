"""The organization service as an OS process, the way `make dev` and deployments run it:
webhook in on JetStream, state out over gRPC, domain events out on NATS, clean SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from polar.organization.v1 import events_pb2
from polar.organization.v1 import organization_service_pb2 as pb
from polar.organization.v1.organization_service_pb2_grpc import OrganizationServiceStub
from polar_kit.grpc.auth import operator_channel
from polar_kit.testing import eventually

SERVICE = "polar.organization.v1.OrganizationService"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def organization_process(
    settings_env: dict[str, str], tmp_path: Path
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    port = free_port()
    env = os.environ | settings_env | {"POLAR_ORGANIZATION_GRPC_PORT": str(port)}
    # Logs go to a file: an unread pipe fills up and then blocks the process.
    with (tmp_path / "organization.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "polar_organization", env=env, stdout=log, stderr=log
        )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)

        async def serving() -> bool:
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
            except grpc.aio.AioRpcError:
                return False
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

        await eventually(serving, within=30)
    yield process, port
    if process.returncode is None:
        process.kill()
        await process.wait()


async def test_webhook_to_rpc_to_event_and_graceful_stop(
    organization_process: tuple[asyncio.subprocess.Process, int],
    js: JetStreamContext,
    nc: NATS,
    nats_prefix: str,
    github_fixtures: Path,
    tmp_path: Path,
) -> None:
    process, port = organization_process
    received: list[Msg] = []
    sub = await nc.subscribe(f"{nats_prefix}polar.organization.v1.created", cb=_append(received))

    payload = json.loads(
        (github_fixtures / "webhooks/installation/created.payload.json").read_text()
    )
    installation_id = 880_000_000 + uuid.uuid4().int % 1_000_000
    payload["installation"]["id"] = installation_id
    payload["installation"]["account"]["id"] = installation_id
    payload["installation"]["account"]["login"] = f"proc-{installation_id}"
    delivery = str(uuid.uuid4())
    await js.publish(
        f"{nats_prefix}github.webhook.installation.created",
        json.dumps(payload).encode(),
        headers={"Nats-Msg-Id": delivery, "X-GitHub-Delivery": delivery},
    )

    async with operator_channel(f"127.0.0.1:{port}") as channel:
        stub = OrganizationServiceStub(channel)

        async def mirrored() -> bool:
            try:
                await stub.LookupOrganization(
                    pb.LookupOrganizationRequest(installation_id=installation_id)
                )
            except grpc.aio.AioRpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                return False
            return True

        await eventually(mirrored, within=20)
        # The request id a caller sends comes back, so logs on both sides can be joined.
        call = stub.GetUser(
            pb.GetUserRequest(id=str(uuid.uuid4())), metadata=(("x-request-id", "req-123"),)
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert ("x-request-id", "req-123") in tuple(info.value.trailing_metadata() or ())

    # The outbox relay of the process publishes the event with CloudEvents headers.
    async def published() -> bool:
        return any(
            events_pb2.OrganizationCreated.FromString(m.data).organization.installation_id
            == installation_id
            for m in received
        )

    await eventually(published, within=20)
    event = next(
        m
        for m in received
        if events_pb2.OrganizationCreated.FromString(m.data).organization.installation_id
        == installation_id
    )
    assert event.headers is not None
    assert event.headers["ce-type"] == "polar.organization.v1.OrganizationCreated"
    assert event.headers["ce-source"] == "/polar/organization"
    assert event.headers["Nats-Msg-Id"] == event.headers["ce-id"]
    await sub.unsubscribe()

    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), timeout=30) == 0
    assert '"event": "stopped"' in (tmp_path / "organization.log").read_text()


def _append(into: list[Msg]) -> Callable[[Msg], Awaitable[None]]:
    async def cb(msg: Msg) -> None:
        into.append(msg)

    return cb


async def test_the_process_refuses_callers_without_credentials(
    organization_process: tuple[asyncio.subprocess.Process, int],
) -> None:
    """Issue 10, finding 6, against the real process: health answers anyone (probes), every
    method wants credentials, and reflection is off unless configured."""
    _, port = organization_process
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = OrganizationServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ListOrganizations(pb.ListOrganizationsRequest())
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # Reflection's method, called as a unary call: a streaming call's request can still
        # be on its way when the server answers UNIMPLEMENTED, and grpc aio then reports its
        # own failed send (INTERNAL "Failed execute_batch") instead, about 1 call in 700.
        # With reflection on, this same call is answered.
        service = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]
        reflection = channel.unary_unary(
            f"/{service.full_name}/{service.methods_by_name['ServerReflectionInfo'].name}",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await reflection(reflection_pb2.ServerReflectionRequest(list_services=""))
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_the_process_does_not_start_without_an_internal_secret(
    settings_env: dict[str, str], tmp_path: Path
) -> None:
    env = os.environ | settings_env | {"POLAR_ORGANIZATION_GRPC_PORT": str(free_port())}
    env = {k: v for k, v in env.items() if k not in ("POLAR_DEV_MODE", "POLAR_INTERNAL_SECRET")}
    env["POLAR_TOKEN_ENCRYPTION_KEYS"] = "cmVhbC1sb29raW5nLWtleS1mb3ItdGhpcy10ZXN0ISE="
    with (tmp_path / "organization.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "polar_organization", env=env, stdout=log, stderr=log
        )
    assert await asyncio.wait_for(process.wait(), timeout=30) != 0
    assert "POLAR_INTERNAL_SECRET is not set" in (tmp_path / "organization.log").read_text()
