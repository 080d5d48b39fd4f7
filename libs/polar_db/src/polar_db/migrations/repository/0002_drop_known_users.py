"""known_users goes: the repository service kept it from the organization service's user
events for rewards' backers, and nothing has read it since rewards became the reward
service's, which asks the organization service (decision 0027).

Downgrade recreates the table empty: the users are the organization service's, which this
history does not read; nothing reads the table either.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_table("known_users", schema="repository")


def downgrade() -> None:
    ts = postgresql.TIMESTAMP(timezone=True)
    op.create_table(
        "known_users",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("created_at", ts, server_default=sa.text("now()"), nullable=False),
        sa.Column("modified_at", ts, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_known_users"),
        schema="repository",
    )
