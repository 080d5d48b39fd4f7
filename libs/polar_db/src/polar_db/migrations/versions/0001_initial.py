"""Initial schema: every table of the seed plus outbox_events and processed_messages.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 06:59:00.714329
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Enums are stored as VARCHAR(32) without CHECK constraints: see polar_db.models.base.str_enum.
    op.create_table(
        "organizations",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("external_id", sa.BigInteger(), nullable=False),
        sa.Column("avatar_url", sa.Text(), nullable=True),
        sa.Column("is_personal", sa.Boolean(), nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=True),
        sa.Column("installation_created_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("installation_updated_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("installation_suspended_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("installation_suspended_by", sa.Text(), nullable=True),
        sa.Column(
            "installation_permissions", postgresql.JSONB(astext_type=sa.Text()), nullable=True
        ),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("onboarded_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("modified_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("deleted_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organizations")),
        sa.UniqueConstraint("external_id", name=op.f("uq_organizations_external_id")),
        sa.UniqueConstraint("installation_id", name=op.f("uq_organizations_installation_id")),
        sa.UniqueConstraint("name", name=op.f("uq_organizations_name")),
    )
    op.create_table(
        "outbox_events",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("published_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
    )
    op.create_index(
        "ix_outbox_events_unpublished_seq",
        "outbox_events",
        ["seq"],
        unique=False,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "processed_messages",
        sa.Column("consumer", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column(
            "processed_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("consumer", "message_id", name=op.f("pk_processed_messages")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("email_verified", sa.Boolean(), nullable=False),
        sa.Column("avatar_url", sa.Text(), nullable=True),
        sa.Column("profile", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("modified_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("deleted_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "oauth_accounts",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("access_token", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Integer(), nullable=True),
        sa.Column("refresh_token", sa.Text(), nullable=True),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("account_email", sa.Text(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("modified_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_oauth_accounts_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_accounts")),
        sa.UniqueConstraint(
            "platform", "account_id", name=op.f("uq_oauth_accounts_platform_account_id")
        ),
    )
    op.create_index(op.f("ix_oauth_accounts_user_id"), "oauth_accounts", ["user_id"], unique=False)
    op.create_table(
        "repositories",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.BigInteger(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("open_issues", sa.Integer(), nullable=True),
        sa.Column("forks", sa.Integer(), nullable=True),
        sa.Column("stars", sa.Integer(), nullable=True),
        sa.Column("watchers", sa.Integer(), nullable=True),
        sa.Column("main_branch", sa.Text(), nullable=True),
        sa.Column("topics", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("license", sa.Text(), nullable=True),
        sa.Column("homepage", sa.Text(), nullable=True),
        sa.Column("repository_pushed_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("repository_modified_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("repository_created_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("is_private", sa.Boolean(), nullable=False),
        sa.Column("is_fork", sa.Boolean(), nullable=True),
        sa.Column("is_issues_enabled", sa.Boolean(), nullable=True),
        sa.Column("is_wiki_enabled", sa.Boolean(), nullable=True),
        sa.Column("is_projects_enabled", sa.Boolean(), nullable=True),
        sa.Column("is_downloads_enabled", sa.Boolean(), nullable=True),
        sa.Column("is_archived", sa.Boolean(), nullable=True),
        sa.Column("is_disabled", sa.Boolean(), nullable=True),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("modified_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("deleted_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_repositories_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_repositories")),
        sa.UniqueConstraint("external_id", name=op.f("uq_repositories_external_id")),
        sa.UniqueConstraint(
            "organization_id", "name", name=op.f("uq_repositories_organization_id_name")
        ),
    )
    op.create_table(
        "user_organizations",
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("modified_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_user_organizations_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_organizations_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "organization_id", name=op.f("pk_user_organizations")),
    )
    op.create_index(
        op.f("ix_user_organizations_organization_id"),
        "user_organizations",
        ["organization_id"],
        unique=False,
    )
    op.create_table(
        "issues",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.BigInteger(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("repository_id", sa.UUID(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("comments", sa.Integer(), nullable=True),
        sa.Column("author", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("author_association", sa.Text(), nullable=True),
        sa.Column("labels", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("assignee", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("assignees", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("milestone", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("closed_by", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("reactions", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=True),
        sa.Column("issue_closed_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("issue_modified_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("issue_created_at", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("modified_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("deleted_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_issues_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_issues_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_issues")),
        sa.UniqueConstraint("external_id", name=op.f("uq_issues_external_id")),
        sa.UniqueConstraint(
            "organization_id",
            "repository_id",
            "number",
            name=op.f("uq_issues_organization_id_repository_id_number"),
        ),
    )
    op.create_index(op.f("ix_issues_repository_id"), "issues", ["repository_id"], unique=False)
    op.create_table(
        "pull_requests",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("requested_reviewers", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("requested_teams", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("is_draft", sa.Boolean(), nullable=True),
        sa.Column("is_rebaseable", sa.Boolean(), nullable=True),
        sa.Column("is_mergeable", sa.Boolean(), nullable=True),
        sa.Column("mergeable_state", sa.Text(), nullable=True),
        sa.Column("merged_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("merge_commit_sha", sa.Text(), nullable=True),
        sa.Column("head", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("base", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("commits", sa.Integer(), nullable=True),
        sa.Column("additions", sa.Integer(), nullable=True),
        sa.Column("deletions", sa.Integer(), nullable=True),
        sa.Column("changed_files", sa.Integer(), nullable=True),
        sa.Column("review_comments", sa.Integer(), nullable=True),
        sa.Column("maintainer_can_modify", sa.Boolean(), nullable=True),
        sa.Column("is_merged", sa.Boolean(), nullable=True),
        sa.Column("merged_by", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.BigInteger(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("repository_id", sa.UUID(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("comments", sa.Integer(), nullable=True),
        sa.Column("author", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("author_association", sa.Text(), nullable=True),
        sa.Column("labels", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("assignee", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("assignees", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("milestone", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("closed_by", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("reactions", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=True),
        sa.Column("issue_closed_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("issue_modified_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("issue_created_at", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("modified_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("deleted_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_pull_requests_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_pull_requests_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pull_requests")),
        sa.UniqueConstraint("external_id", name=op.f("uq_pull_requests_external_id")),
        sa.UniqueConstraint(
            "organization_id",
            "repository_id",
            "number",
            name=op.f("uq_pull_requests_organization_id_repository_id_number"),
        ),
    )
    op.create_index(
        op.f("ix_pull_requests_repository_id"), "pull_requests", ["repository_id"], unique=False
    )
    op.create_table(
        "rewards",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("issue_id", sa.UUID(), nullable=False),
        sa.Column("repository_id", sa.UUID(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("backer_user_id", sa.UUID(), nullable=True),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("modified_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.CheckConstraint("amount > 0", name=op.f("ck_rewards_amount_positive")),
        sa.ForeignKeyConstraint(
            ["backer_user_id"],
            ["users.id"],
            name=op.f("fk_rewards_backer_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["issue_id"], ["issues.id"], name=op.f("fk_rewards_issue_id_issues"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_rewards_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_rewards_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rewards")),
    )
    op.create_index(op.f("ix_rewards_backer_user_id"), "rewards", ["backer_user_id"], unique=False)
    op.create_index(op.f("ix_rewards_issue_id"), "rewards", ["issue_id"], unique=False)
    op.create_index(
        op.f("ix_rewards_organization_id"), "rewards", ["organization_id"], unique=False
    )
    op.create_index(op.f("ix_rewards_repository_id"), "rewards", ["repository_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_rewards_repository_id"), table_name="rewards")
    op.drop_index(op.f("ix_rewards_organization_id"), table_name="rewards")
    op.drop_index(op.f("ix_rewards_issue_id"), table_name="rewards")
    op.drop_index(op.f("ix_rewards_backer_user_id"), table_name="rewards")
    op.drop_table("rewards")
    op.drop_index(op.f("ix_pull_requests_repository_id"), table_name="pull_requests")
    op.drop_table("pull_requests")
    op.drop_index(op.f("ix_issues_repository_id"), table_name="issues")
    op.drop_table("issues")
    op.drop_index(op.f("ix_user_organizations_organization_id"), table_name="user_organizations")
    op.drop_table("user_organizations")
    op.drop_table("repositories")
    op.drop_index(op.f("ix_oauth_accounts_user_id"), table_name="oauth_accounts")
    op.drop_table("oauth_accounts")
    op.drop_table("users")
    op.drop_table("processed_messages")
    op.drop_index(
        "ix_outbox_events_unpublished_seq",
        table_name="outbox_events",
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.drop_table("outbox_events")
    op.drop_table("organizations")
