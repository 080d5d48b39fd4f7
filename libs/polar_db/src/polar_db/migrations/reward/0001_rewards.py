"""The reward service's history starts here (decision 0027): `rewards` moves, rows and all,
from the repository service's schema into `reward`; its foreign keys to issues and
repositories go (they would cross owners: the reward service keeps those ids current from
the repository service's events); the reward service gets its own outbox and processed marks.

The repository service's role loses its grants on the table (privileges travel with it).

Revision ID: 0001
Revises:
Create Date: 2026-11-30 11:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = postgresql.TIMESTAMP(timezone=True)
# (column, referred table) of the foreign keys that would cross owners.
CROSSING = (("issue_id", "issues"), ("repository_id", "repositories"))


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS reward")
    for column, referred in CROSSING:
        op.drop_constraint(
            f"fk_rewards_{column}_{referred}", "rewards", schema="repository", type_="foreignkey"
        )
    op.execute("ALTER TABLE repository.rewards SET SCHEMA reward")
    op.execute(
        "DO $$ BEGIN REVOKE ALL ON reward.rewards FROM polar_repository; "
        "EXCEPTION WHEN undefined_object THEN NULL; END $$"
    )
    op.create_table(
        "outbox_events",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("published_at", TS, nullable=True),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox_events"),
        schema="reward",
    )
    op.create_index(
        "ix_outbox_events_unpublished_seq",
        "outbox_events",
        ["seq"],
        postgresql_where=sa.text("published_at IS NULL"),
        schema="reward",
    )
    op.create_index(
        "ix_outbox_events_published_at",
        "outbox_events",
        ["published_at"],
        postgresql_using="brin",
        schema="reward",
    )
    op.create_table(
        "processed_messages",
        sa.Column("consumer", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("processed_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "message_id", name="pk_processed_messages"),
        schema="reward",
    )
    op.create_index(
        "ix_processed_messages_processed_at",
        "processed_messages",
        ["processed_at"],
        postgresql_using="brin",
        schema="reward",
    )


def downgrade() -> None:
    op.drop_table("processed_messages", schema="reward")
    op.drop_table("outbox_events", schema="reward")
    op.execute("ALTER TABLE reward.rewards SET SCHEMA repository")
    # Rewards of issues or repositories gone meanwhile would break the keys: they go too.
    op.execute(
        "DELETE FROM repository.rewards r WHERE NOT EXISTS "
        "(SELECT 1 FROM repository.issues i WHERE i.id = r.issue_id) OR NOT EXISTS "
        "(SELECT 1 FROM repository.repositories p WHERE p.id = r.repository_id)"
    )
    for column, referred in CROSSING:
        op.create_foreign_key(
            f"fk_rewards_{column}_{referred}",
            "rewards",
            referred,
            [column],
            ["id"],
            source_schema="repository",
            referent_schema="repository",
            ondelete="CASCADE",
        )
    op.execute(
        "DO $$ BEGIN GRANT SELECT, INSERT, UPDATE, DELETE ON repository.rewards "
        "TO polar_repository; EXCEPTION WHEN undefined_object THEN NULL; END $$"
    )
