"""The reward service as an OS process, the way `make dev` and deployments run it: it
starts, checks the issue with the (in-process) repository and organization services,
publishes its event to NATS, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from polar.common.v1.common_pb2 import Money
from polar.reward.v1 import events_pb2, reward_pb2
from polar.reward.v1 import reward_service_pb2 as pb
from polar.reward.v1.reward_service_pb2_grpc import RewardServiceStub
from polar_kit.grpc import RunningServer
from polar_kit.grpc.auth import operator_channel
from polar_kit.testing import eventually
from polar_reward.testing import MakeIssues, MakeRepo

SERVICE = "polar.reward.v1.RewardService"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def reward_process(
    settings_env: dict[str, str], tmp_path: Path, others: tuple[RunningServer, RunningServer]
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    port = free_port()
    org, repo = others
    env = os.environ | settings_env
    env |= {
        "POLAR_REWARD_GRPC_PORT": str(port),
        "POLAR_ORGANIZATION_GRPC_TARGET": f"127.0.0.1:{org.port}",
        "POLAR_REPOSITORY_GRPC_TARGET": f"127.0.0.1:{repo.port}",
    }
    # Logs go to a file: an unread pipe fills up and then blocks the process.
    with (tmp_path / "reward.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "polar_reward", env=env, stdout=log, stderr=log
        )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)

        async def serving() -> bool:
            if process.returncode is not None:
                raise AssertionError((tmp_path / "reward.log").read_text())
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


async def test_create_publishes_the_event_and_sigterm_stops_cleanly(
    reward_process: tuple[asyncio.subprocess.Process, int],
    nc: NATS,
    nats_prefix: str,
    tmp_path: Path,
    make_repo: MakeRepo,
    make_issues: MakeIssues,
) -> None:
    process, port = reward_process
    [issue] = await make_issues(await make_repo())
    received: list[Msg] = []

    async def on_message(msg: Msg) -> None:
        received.append(msg)

    sub = await nc.subscribe(f"{nats_prefix}polar.reward.v1.reward_created", cb=on_message)
    async with operator_channel(f"127.0.0.1:{port}") as channel:
        stub = RewardServiceStub(channel)
        amount = Money(currency="USD", minor_units=500)
        request = pb.CreateRewardRequest(
            reward=reward_pb2.Reward(issue_id=str(issue.id), amount=amount)
        )
        created = (await stub.CreateReward(request)).reward

    # The outbox relay of the process publishes it, with its CloudEvents headers.
    async def published() -> bool:
        return any(
            events_pb2.RewardCreated.FromString(m.data).reward.id == created.id for m in received
        )

    await eventually(published, within=20)
    event = next(
        m for m in received if events_pb2.RewardCreated.FromString(m.data).reward.id == created.id
    )
    assert event.headers is not None
    assert event.headers["ce-type"] == "polar.reward.v1.RewardCreated"
    assert event.headers["ce-source"] == "/polar/reward"
    await sub.unsubscribe()

    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), timeout=30) == 0
    assert '"event": "stopped"' in (tmp_path / "reward.log").read_text()


async def test_callers_need_credentials(
    reward_process: tuple[asyncio.subprocess.Process, int],
) -> None:
    _, port = reward_process
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await RewardServiceStub(channel).ListRewards(pb.ListRewardsRequest())
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
