"""The domain events this service publishes, written to the outbox in the caller's transaction.

Payloads are the protobuf messages of polar/reward/v1/events.proto; each is published on the
subject its proto declares (`polar.catalog.subject_of`, generated; the README lists them).
"""

from __future__ import annotations

from polar.catalog import subject_of
from polar.reward.v1 import events_pb2
from polar_db.models.reward import Reward
from polar_kit.outbox import record_event
from sqlalchemy.ext.asyncio import AsyncSession

from . import mappers

SOURCE = "/polar/reward"


async def reward_created(session: AsyncSession, row: Reward) -> None:
    message = events_pb2.RewardCreated(reward=mappers.reward(row))
    await record_event(session, subject_of(message), message, source=SOURCE)
