"""outbox_events.headers: trace context and correlation ids sent with each event.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: adding it rewrites nothing; older rows are sent without extras.
    op.add_column("outbox_events", sa.Column("headers", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox_events", "headers")
