"""organizations.version: +1 with every event about an organization, so a consumer keeping a
copy can tell an old or repeated event, and a missing one (decision 0021).

The organization service's history starts here (after the shared history's split, 0007).

Revision ID: 0001
Revises:
Create Date: 2026-11-30 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant default: PostgreSQL adds the column without rewriting the table.
    op.add_column(
        "organizations",
        sa.Column("version", sa.BigInteger(), server_default=sa.text("1"), nullable=False),
        schema="organization",
    )


def downgrade() -> None:
    op.drop_column("organizations", "version", schema="organization")
