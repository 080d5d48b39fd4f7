"""GitHub issues and pull requests (a pull request carries every issue column)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ForeignKey, Index, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from polar_db.models.base import (
    REPOSITORY,
    Base,
    IdMixin,
    IssueState,
    Platform,
    SoftDeleteMixin,
    TimestampMixin,
    bigint,
    in_schema,
    str_enum,
)


def _table_args(table: str) -> tuple[Any, ...]:
    return in_schema(
        REPOSITORY,
        # Also serves lookups and cascades by organization_id (leading column).
        UniqueConstraint("organization_id", "repository_id", "number"),
        # List by repository, newest number first (keyset on number), and the
        # ON DELETE CASCADE from repositories (so over every row, tombstones too).
        Index(f"ix_{table}_repository_id_number", "repository_id", "number"),
        # The same list filtered by state: a backward scan of the matching entries only.
        Index(
            f"ix_{table}_live_repository_id_state_number",
            "repository_id",
            "state",
            "number",
            postgresql_where=sa.text("deleted_at IS NULL"),
        ),
    )


class IssueFields(IdMixin, TimestampMixin, SoftDeleteMixin):
    platform: Mapped[Platform] = mapped_column(str_enum(Platform))
    external_id: Mapped[bigint] = mapped_column(unique=True)
    # The organization service's id; no foreign key: that table is not ours (decision 0021).
    organization_id: Mapped[uuid.UUID]
    repository_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("repository.repositories.id", ondelete="CASCADE")
    )
    number: Mapped[int]
    title: Mapped[str]
    body: Mapped[str | None]
    comments: Mapped[int | None]
    author: Mapped[dict[str, Any] | None]
    author_association: Mapped[str | None]
    labels: Mapped[list[Any] | None]
    assignee: Mapped[dict[str, Any] | None]
    assignees: Mapped[list[Any] | None]
    milestone: Mapped[dict[str, Any] | None]
    closed_by: Mapped[dict[str, Any] | None]
    reactions: Mapped[dict[str, Any] | None]
    state: Mapped[IssueState] = mapped_column(str_enum(IssueState))
    state_reason: Mapped[str | None]
    issue_closed_at: Mapped[datetime | None]
    issue_modified_at: Mapped[datetime | None]
    issue_created_at: Mapped[datetime]


class Issue(IssueFields, Base):
    __tablename__ = "issues"
    __table_args__ = _table_args("issues")


class PullRequest(IssueFields, Base):
    __tablename__ = "pull_requests"
    __table_args__ = _table_args("pull_requests")

    requested_reviewers: Mapped[list[Any] | None]
    requested_teams: Mapped[list[Any] | None]
    is_draft: Mapped[bool | None]
    is_rebaseable: Mapped[bool | None]
    is_mergeable: Mapped[bool | None]
    mergeable_state: Mapped[str | None]
    merged_at: Mapped[datetime | None]
    merge_commit_sha: Mapped[str | None]
    head: Mapped[dict[str, Any] | None]
    base: Mapped[dict[str, Any] | None]
    commits: Mapped[int | None]
    additions: Mapped[int | None]
    deletions: Mapped[int | None]
    changed_files: Mapped[int | None]
    review_comments: Mapped[int | None]
    maintainer_can_modify: Mapped[bool | None]
    is_merged: Mapped[bool | None]
    merged_by: Mapped[dict[str, Any] | None]
