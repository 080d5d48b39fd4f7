"""Indexes for the repository service's queries.

- issues / pull_requests: (repository_id, number) for "list by repository, number
  descending" (keyset paging) and the cascade from repositories, replacing the plain
  repository_id index; and a partial (repository_id, state, number) WHERE deleted_at IS NULL
  for the same list filtered by state.
- repositories: the name is unique among the live repositories of an organization only
  (a partial unique index instead of a constraint), so a deleted repository's tombstone does
  not block a new repository of the same name; organization_id gets its own index over every
  row for the cascade from organizations.
- rewards: (repository_id, created_at, id) for "list by repository, newest first",
  replacing the plain repository_id index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 07:15:05.127282
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("deleted_at IS NULL")


def upgrade() -> None:
    # New indexes first, so the foreign keys' cascades stay indexed throughout.
    for table in ("issues", "pull_requests"):
        op.create_index(f"ix_{table}_repository_id_number", table, ["repository_id", "number"])
        op.create_index(
            f"ix_{table}_live_repository_id_state_number",
            table,
            ["repository_id", "state", "number"],
            postgresql_where=LIVE,
        )
        op.drop_index(f"ix_{table}_repository_id", table_name=table)

    op.create_index("ix_repositories_organization_id", "repositories", ["organization_id"])
    op.create_index(
        "ix_repositories_live_organization_id_name",
        "repositories",
        ["organization_id", "name"],
        unique=True,
        postgresql_where=LIVE,
    )
    op.drop_constraint("uq_repositories_organization_id_name", "repositories", type_="unique")

    op.create_index(
        "ix_rewards_repository_id_created_at_id", "rewards", ["repository_id", "created_at", "id"]
    )
    op.drop_index("ix_rewards_repository_id", table_name="rewards")


def downgrade() -> None:
    # Fails if tombstones share a live repository's name: the old constraint cannot hold then.
    op.create_index("ix_rewards_repository_id", "rewards", ["repository_id"])
    op.drop_index("ix_rewards_repository_id_created_at_id", table_name="rewards")

    op.create_unique_constraint(
        "uq_repositories_organization_id_name", "repositories", ["organization_id", "name"]
    )
    op.drop_index("ix_repositories_live_organization_id_name", table_name="repositories")
    op.drop_index("ix_repositories_organization_id", table_name="repositories")

    for table in ("issues", "pull_requests"):
        op.create_index(f"ix_{table}_repository_id", table, ["repository_id"])
        op.drop_index(f"ix_{table}_live_repository_id_state_number", table_name=table)
        op.drop_index(f"ix_{table}_repository_id_number", table_name=table)
