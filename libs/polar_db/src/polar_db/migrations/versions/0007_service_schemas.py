"""The split: every table moves into its owner's schema (decision 0021); this history closes.

- organization: users, oauth_accounts, organizations, user_organizations;
  repository: repositories, issues, pull_requests, rewards, sync_jobs.
- Foreign keys that would cross owners are dropped (repositories, issues, pull_requests and
  rewards to organizations; rewards.backer_user_id to users); their indexes stay.
- The outbox and processed marks are split by owner: the existing tables go to the
  organization service (their rows of the repository service are moved out), each service
  has its own pair from now on. The outbox keeps a nullable `headers` (extra NATS headers).
- The repository service's read models start as a copy of what it used to read:
  known_organizations (version 0: any event of the organization service overrides it) and
  known_users.

Later changes go to a service's own history (polar_db/migrations/<service>/).

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

OWNED = {
    "organization": ("users", "oauth_accounts", "organizations", "user_organizations"),
    "repository": ("repositories", "issues", "pull_requests", "rewards", "sync_jobs"),
}
# (table, column, referred table, ondelete) of the foreign keys that would cross owners.
CROSSING = (
    ("repositories", "organization_id", "organizations", "CASCADE"),
    ("issues", "organization_id", "organizations", "CASCADE"),
    ("pull_requests", "organization_id", "organizations", "CASCADE"),
    ("rewards", "organization_id", "organizations", "CASCADE"),
    ("rewards", "backer_user_id", "users", "SET NULL"),
)
ORGANIZATION_SOURCE = "/polar/organization"
TS = postgresql.TIMESTAMP(timezone=True)


def _fk(table: str, column: str, referred: str) -> str:
    return f"fk_{table}_{column}_{referred}"


def _outbox(schema: str) -> None:
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
        schema=schema,
    )
    op.create_index(
        "ix_outbox_events_unpublished_seq",
        "outbox_events",
        ["seq"],
        postgresql_where=sa.text("published_at IS NULL"),
        schema=schema,
    )
    op.create_index(
        "ix_outbox_events_published_at",
        "outbox_events",
        ["published_at"],
        postgresql_using="brin",
        schema=schema,
    )
    op.create_table(
        "processed_messages",
        sa.Column("consumer", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("processed_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "message_id", name="pk_processed_messages"),
        schema=schema,
    )
    op.create_index(
        "ix_processed_messages_processed_at",
        "processed_messages",
        ["processed_at"],
        postgresql_using="brin",
        schema=schema,
    )


OUTBOX_COLUMNS = "id, subject, type, source, payload, created_at, published_at, headers"


def upgrade() -> None:
    for schema in OWNED:
        op.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for table, column, referred, _ in CROSSING:
        op.drop_constraint(_fk(table, column, referred), table, type_="foreignkey")
    for schema, tables in OWNED.items():
        for table in tables:
            op.execute(f"ALTER TABLE public.{table} SET SCHEMA {schema}")

    # The outbox and processed marks: the old pair becomes the organization service's.
    op.execute("ALTER TABLE public.outbox_events SET SCHEMA organization")
    op.execute("ALTER TABLE public.processed_messages SET SCHEMA organization")
    op.execute("ALTER TABLE organization.outbox_events ADD COLUMN IF NOT EXISTS headers JSONB")
    _outbox("repository")
    op.execute(
        f"INSERT INTO repository.outbox_events ({OUTBOX_COLUMNS}) "
        f"SELECT {OUTBOX_COLUMNS} FROM organization.outbox_events "
        f"WHERE source <> '{ORGANIZATION_SOURCE}' ORDER BY seq"
    )
    op.execute(f"DELETE FROM organization.outbox_events WHERE source <> '{ORGANIZATION_SOURCE}'")
    op.execute(
        "INSERT INTO repository.processed_messages "
        "SELECT * FROM organization.processed_messages WHERE consumer NOT LIKE 'organization-%'"
    )
    op.execute(
        "DELETE FROM organization.processed_messages WHERE consumer NOT LIKE 'organization-%'"
    )

    # The repository service's read models, from what it used to read.
    op.create_table(
        "known_organizations",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("version", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("modified_at", TS, nullable=True),
        sa.Column("deleted_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_known_organizations"),
        sa.UniqueConstraint("external_id", name="uq_known_organizations_external_id"),
        schema="repository",
    )
    op.create_index(
        "ix_known_organizations_name", "known_organizations", ["name"], schema="repository"
    )
    op.create_index(
        "ix_known_organizations_installation_id",
        "known_organizations",
        ["installation_id"],
        schema="repository",
    )
    op.create_table(
        "known_users",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("modified_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_known_users"),
        schema="repository",
    )
    op.execute(
        "INSERT INTO repository.known_organizations "
        "(id, platform, external_id, name, installation_id, status, deleted_at) "
        "SELECT id, platform, external_id, name, installation_id, status, deleted_at "
        "FROM organization.organizations"
    )
    op.execute(
        "INSERT INTO repository.known_users (id) "
        "SELECT id FROM organization.users WHERE deleted_at IS NULL"
    )


def downgrade() -> None:
    # Service histories are downgraded first (polar_db.migrate.downgrade); what is left of
    # the schemas (their version tables) goes with them.
    op.drop_table("known_users", schema="repository")
    op.drop_table("known_organizations", schema="repository")
    op.execute(
        f"INSERT INTO organization.outbox_events ({OUTBOX_COLUMNS}) "
        f"SELECT {OUTBOX_COLUMNS} FROM repository.outbox_events ORDER BY seq"
    )
    op.execute(
        "INSERT INTO organization.processed_messages SELECT * FROM repository.processed_messages"
    )
    op.drop_table("processed_messages", schema="repository")
    op.drop_table("outbox_events", schema="repository")
    op.execute("ALTER TABLE organization.outbox_events DROP COLUMN headers")
    op.execute("ALTER TABLE organization.outbox_events SET SCHEMA public")
    op.execute("ALTER TABLE organization.processed_messages SET SCHEMA public")
    for schema, tables in OWNED.items():
        for table in tables:
            op.execute(f"ALTER TABLE {schema}.{table} SET SCHEMA public")
    for table, column, referred, ondelete in CROSSING:
        op.create_foreign_key(
            _fk(table, column, referred), table, referred, [column], ["id"], ondelete=ondelete
        )
    for schema in OWNED:
        op.execute(f"DROP SCHEMA {schema} CASCADE")
