"""GitHub repositories."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from polar_db.models.base import (
    Base,
    IdMixin,
    Platform,
    SoftDeleteMixin,
    TimestampMixin,
    bigint,
    str_enum,
)


class Repository(IdMixin, TimestampMixin, SoftDeleteMixin, Base):
    __tablename__ = "repositories"
    # Also serves lookups and cascades by organization_id (leading column).
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    platform: Mapped[Platform] = mapped_column(str_enum(Platform))
    external_id: Mapped[bigint] = mapped_column(unique=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
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
    is_archived: Mapped[bool | None]
    is_disabled: Mapped[bool | None]
