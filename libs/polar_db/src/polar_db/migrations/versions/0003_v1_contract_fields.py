"""Fields the monolith's v1 contract shows that no column kept yet.

- users.is_superuser: who may use the v1 user-admin routes (granted by an operator with
  `python -m polar_organization.superuser`).
- repositories.is_pages_enabled: GitHub's `has_pages` (the other feature flags have columns).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 08:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column("is_superuser", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column("repositories", sa.Column("is_pages_enabled", sa.Boolean(), nullable=True))


def downgrade() -> None:
    op.drop_column("repositories", "is_pages_enabled")
    op.drop_column("users", "is_superuser")
