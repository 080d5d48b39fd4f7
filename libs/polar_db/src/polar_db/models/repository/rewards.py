"""Rewards pledged on issues."""

from __future__ import annotations

import uuid

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from polar_db.models.base import (
    REPOSITORY,
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
        REPOSITORY,
        CheckConstraint("amount > 0", name="amount_positive"),
        # List by repository, newest first (keyset on created_at, id); also serves the
        # ON DELETE CASCADE from repositories.
        Index("ix_rewards_repository_id_created_at_id", "repository_id", "created_at", "id"),
    )

    issue_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("repository.issues.id", ondelete="CASCADE"), index=True
    )
    repository_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("repository.repositories.id", ondelete="CASCADE")
    )
    # Ids of the organization service's rows: no foreign keys across owners (decision 0021).
    organization_id: Mapped[uuid.UUID] = mapped_column(index=True)
    # Minor units (cents): integers, never floats.
    amount: Mapped[bigint]
    currency: Mapped[str] = mapped_column(String(3))
    state: Mapped[RewardState] = mapped_column(str_enum(RewardState), default=RewardState.created)
    backer_user_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    email: Mapped[str | None]
    # The caller's AIP-155 request id: a retried CreateReward finds the reward it created.
    request_id: Mapped[uuid.UUID | None] = mapped_column(unique=True)
