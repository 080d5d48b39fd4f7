"""Rewards pledged on issues: the reward service's table (decision 0027). Its issue,
repository and organization ids are the repository service's, kept current by the reward
service's consumers of that service's events."""

from __future__ import annotations

import uuid

from sqlalchemy import CheckConstraint, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from polar_db.models.base import (
    REWARD,
    Base,
    IdMixin,
    RewardState,
    TimestampMixin,
    bigint,
    in_schema,
    str_enum,
)


class Reward(IdMixin, TimestampMixin, Base):
    __tablename__ = "rewards"
    __table_args__ = in_schema(
        REWARD,
        CheckConstraint("amount > 0", name="amount_positive"),
        # List by repository, newest first (keyset on created_at, id).
        Index("ix_rewards_repository_id_created_at_id", "repository_id", "created_at", "id"),
    )

    # Ids of the repository and organization services' rows: no foreign keys across owners
    # (decision 0021); the reward service's consumers keep them current.
    issue_id: Mapped[uuid.UUID] = mapped_column(index=True)
    repository_id: Mapped[uuid.UUID]
    organization_id: Mapped[uuid.UUID] = mapped_column(index=True)
    # Minor units (cents): integers, never floats.
    amount: Mapped[bigint]
    currency: Mapped[str] = mapped_column(String(3))
    state: Mapped[RewardState] = mapped_column(str_enum(RewardState), default=RewardState.created)
    backer_user_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    email: Mapped[str | None]
    # The caller's AIP-155 request id: a retried CreateReward finds the reward it created.
    request_id: Mapped[uuid.UUID | None] = mapped_column(unique=True)
