"""The queries of the reward domain, and nothing else."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from polar_db.models import RewardState
from polar_db.models.reward import Reward
from polar_kit.errors import UNIQUE_VIOLATION, sqlstate
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

OPEN = (RewardState.created, RewardState.pending)


async def get_reward(session: AsyncSession, id: uuid.UUID) -> Reward | None:
    return await session.get(Reward, id)


async def get_reward_by_request_id(session: AsyncSession, request_id: uuid.UUID) -> Reward | None:
    return await session.scalar(sa.select(Reward).where(Reward.request_id == request_id))


async def add_reward(session: AsyncSession, reward: Reward) -> Reward | None:
    """None when a reward with the same request_id exists (a concurrent retry committed it
    first: the unique constraint decides, under a savepoint so the transaction goes on)."""
    try:
        async with session.begin_nested():
            session.add(reward)
            await session.flush()
    except IntegrityError as e:
        if reward.request_id is None or sqlstate(e) != UNIQUE_VIOLATION:
            raise
        return None
    return reward


async def list_rewards(
    session: AsyncSession,
    repository_id: uuid.UUID,
    *,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[Reward]:
    """Newest first: ordered by (created_at, id) descending, keyset paged."""
    query = sa.select(Reward).where(Reward.repository_id == repository_id)
    if before is not None:
        query = query.where(sa.tuple_(Reward.created_at, Reward.id) < sa.tuple_(*before))
    query = query.order_by(Reward.created_at.desc(), Reward.id.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def cancel_open(session: AsyncSession, *where: sa.ColumnElement[bool]) -> int:
    """Cancel the open (created, pending) rewards matching `where`; returns how many."""
    result = await session.execute(
        sa.update(Reward)
        .where(*where, Reward.state.in_(OPEN))
        .values(state=RewardState.cancelled, modified_at=sa.func.now())
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def move(session: AsyncSession, where: sa.ColumnElement[bool], **values: uuid.UUID) -> int:
    """Point the matching rewards at another repository and/or organization."""
    changed = [getattr(Reward, k) != v for k, v in values.items()]
    result = await session.execute(
        sa.update(Reward).where(where, sa.or_(*changed)).values(**values, modified_at=sa.func.now())
    )
    return int(getattr(result, "rowcount", 0) or 0)
