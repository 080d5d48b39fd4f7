"""The repository service's history starts here, after the shared history's split (0007),
which left its tables and read models in schema `repository`. Nothing to change yet.

Revision ID: 0001
Revises:
Create Date: 2026-11-30 11:00:00
"""

from collections.abc import Sequence

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
