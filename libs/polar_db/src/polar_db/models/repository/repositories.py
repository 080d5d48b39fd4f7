"""GitHub repositories."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Index
from sqlalchemy.orm import Mapped, mapped_column

from polar_db.models.base import (
    REPOSITORY,
    Base,
    IdMixin,
    Platform,
    SoftDeleteMixin,
    TimestampMixin,
    bigint,
    in_schema,
    str_enum,
)


class Repository(IdMixin, TimestampMixin, SoftDeleteMixin, Base):
    __tablename__ = "repositories"
    __table_args__ = in_schema(
        REPOSITORY,
        # A name is unique among the live repositories of an organization only: a deleted
        # repository's tombstone must not block a new one of the same name (GitHub allows
        # deleting a repository and creating another with its name). Also serves lookups
        # and lists by organization.
        Index(
            "ix_repositories_live_organization_id_name",
            "organization_id",
            "name",
            unique=True,
            postgresql_where=sa.text("deleted_at IS NULL"),
        ),
    )

    platform: Mapped[Platform] = mapped_column(str_enum(Platform))
    external_id: Mapped[bigint] = mapped_column(unique=True)
    # The organization service's id (no foreign key: not our table, decision 0021); indexed
    # over every row, tombstones too, for the organization's deletion.
    organization_id: Mapped[uuid.UUID] = mapped_column(index=True)
    name: Mapped[str]
    description: Mapped[str | None]
    open_issues: Mapped[int | None]
    forks: Mapped[int | None]
    stars: Mapped[int | None]
    watchers: Mapped[int | None]
    main_branch: Mapped[str | None]
    topics: Mapped[list[Any]] = mapped_column(default=list)
    license: Mapped[str | None]
    homepage: Mapped[str | None]
    repository_pushed_at: Mapped[datetime | None]
    repository_modified_at: Mapped[datetime | None]
    repository_created_at: Mapped[datetime | None]
    is_private: Mapped[bool] = mapped_column(default=False)
    is_fork: Mapped[bool | None]
    is_issues_enabled: Mapped[bool | None]
    is_wiki_enabled: Mapped[bool | None]
    is_projects_enabled: Mapped[bool | None]
    is_downloads_enabled: Mapped[bool | None]
    is_pages_enabled: Mapped[bool | None]
    is_archived: Mapped[bool | None]
    is_disabled: Mapped[bool | None]
