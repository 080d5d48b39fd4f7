"""rewards.request_id: CreateReward is safely retryable (AIP-155).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: adding it rewrites nothing; existing rewards have none.
    op.add_column("rewards", sa.Column("request_id", postgresql.UUID(as_uuid=True), nullable=True))
    op.create_unique_constraint("uq_rewards_request_id", "rewards", ["request_id"])


def downgrade() -> None:
    op.drop_constraint("uq_rewards_request_id", "rewards", type_="unique")
    op.drop_column("rewards", "request_id")
