"""Wiring shared by __main__ and the tests: the gRPC service and the consumers."""

from __future__ import annotations

from nats.js import JetStreamContext
from polar.reward.v1 import reward_service_pb2, reward_service_pb2_grpc
from polar_kit.consumer import Consumer
from polar_kit.grpc import ServiceSpec
from polar_kit.grpc.auth import ALL, GATEWAY, OPERATOR, AllowList
from polar_kit.nats import EVENTS
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .consumers import SUBJECTS, on_repository_event
from .directory import Directory
from .servicer import RewardServicer
from .settings import RewardSettings

SERVICE_NAME = reward_service_pb2.DESCRIPTOR.services_by_name["RewardService"].full_name

# Who may call what (polar_kit.grpc.auth): name each caller and its methods; everything
# else is PERMISSION_DENIED. The gateway reads and creates; an operator may do anything.
# This service calls the repository and organization services as "reward" (directory.py).
CALLERS: AllowList = {
    GATEWAY: frozenset({"GetReward", "ListRewards", "CreateReward"}),
    OPERATOR: ALL,
}


def service_spec(directory: Directory) -> ServiceSpec:
    return ServiceSpec(
        name=SERVICE_NAME,
        add_to_server=reward_service_pb2_grpc.add_RewardServiceServicer_to_server,
        servicer=RewardServicer(directory),
        callers=CALLERS,
    )


def consumers(
    settings: RewardSettings,
    js: JetStreamContext,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> list[Consumer]:
    """The repository service's events about issues and repositories (consumers.py)."""
    return [
        Consumer(
            "reward-repository-events",
            EVENTS,
            SUBJECTS,
            on_repository_event,
            sessionmaker=sessionmaker,
            js=js,
            settings=settings,
        )
    ]
