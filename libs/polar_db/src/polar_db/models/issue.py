"""GitHub issues and pull requests (a pull request carries every issue column)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, UniqueConstraint
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from polar_db.models.base import (
    Base,
    IdMixin,
    IssueState,
    Platform,
    SoftDeleteMixin,
    TimestampMixin,
    bigint,
    str_enum,
)


class IssueFields(IdMixin, TimestampMixin, SoftDeleteMixin):
    @declared_attr.directive
    @classmethod
    def __table_args__(cls) -> tuple[Any, ...]:
        # Also serves lookups and cascades by organization_id (leading column).
        return (UniqueConstraint("organization_id", "repository_id", "number"),)

    platform: Mapped[Platform] = mapped_column(str_enum(Platform))
    external_id: Mapped[bigint] = mapped_column(unique=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    repository_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), index=True
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


class PullRequest(IssueFields, Base):
    __tablename__ = "pull_requests"

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
