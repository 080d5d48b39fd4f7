"""gRPC transport: validate, map proto <-> domain, call the service. No SQL, no rules."""

from __future__ import annotations

import re
from typing import Any, TypeAlias

import grpc
from polar.reward.v1 import reward_service_pb2 as pb
from polar.reward.v1 import reward_service_pb2_grpc as pb_grpc
from polar_kit.errors import InvalidArgument
from polar_kit.grpc import current_session
from polar_kit.validation import optional_uuid, page_size, parse_uuid

from . import mappers, service
from .directory import Directory

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

# Deliberately loose: one @, something on each side, no spaces. Deliverability is not ours.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


class RewardServicer(pb_grpc.RewardServiceServicer):
    # REQUIRED fields are present and OUTPUT_ONLY ones absent: the server checks the field
    # behaviour of every request before a method runs.

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    async def GetReward(
        self, request: pb.GetRewardRequest, context: Context
    ) -> pb.GetRewardResponse:
        found = await service.get_reward(current_session(), parse_uuid("id", request.id))
        return pb.GetRewardResponse(reward=mappers.reward(found))

    async def ListRewards(
        self, request: pb.ListRewardsRequest, context: Context
    ) -> pb.ListRewardsResponse:
        page = await service.list_rewards(
            current_session(),
            self.directory,
            parse_uuid("repository_id", request.repository_id),
            page_size=page_size(request.page_size),
            page_token=request.page_token,
        )
        return pb.ListRewardsResponse(
            rewards=[mappers.reward(r) for r in page.items], next_page_token=page.next_page_token
        )

    async def CreateReward(
        self, request: pb.CreateRewardRequest, context: Context
    ) -> pb.CreateRewardResponse:
        reward = request.reward
        issue_id = parse_uuid("reward.issue_id", reward.issue_id)
        email = reward.email.strip() or None
        if email is not None and (len(email) > 320 or not _EMAIL.fullmatch(email)):
            raise InvalidArgument(
                f"email must be an email address, got {email[:64]!r}", field="reward.email"
            )
        created = await service.create_reward(
            current_session(),
            self.directory,
            issue_id,
            amount=reward.amount.minor_units,
            currency=reward.amount.currency,
            backer_user_id=optional_uuid("reward.backer_user_id", reward.backer_user_id),
            email=email,
            request_id=optional_uuid("request_id", request.request_id),
        )
        return pb.CreateRewardResponse(reward=mappers.reward(created))
