"""GitHub organizations (and personal accounts) with their app installation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from polar_db.models.base import (
    ORGANIZATION,
    Base,
    IdMixin,
    OrganizationStatus,
    Platform,
    SoftDeleteMixin,
    TimestampMixin,
    bigint,
    in_schema,
    str_enum,
)


class Organization(IdMixin, TimestampMixin, SoftDeleteMixin, Base):
    """A deleted organization keeps its row (deleted_at set) as a tombstone, so a late or
    redelivered installation.created for the same installation id cannot resurrect it."""

    __tablename__ = "organizations"
    __table_args__ = in_schema(ORGANIZATION)

    platform: Mapped[Platform] = mapped_column(str_enum(Platform))
    name: Mapped[str] = mapped_column(unique=True)
    external_id: Mapped[bigint] = mapped_column(unique=True)
    avatar_url: Mapped[str | None]
    is_personal: Mapped[bool] = mapped_column(default=False)

    installation_id: Mapped[bigint | None] = mapped_column(unique=True)
    installation_created_at: Mapped[datetime | None]
    installation_updated_at: Mapped[datetime | None]
    installation_suspended_at: Mapped[datetime | None]
    installation_suspended_by: Mapped[str | None]
    installation_permissions: Mapped[dict[str, Any] | None]

    status: Mapped[OrganizationStatus] = mapped_column(
        str_enum(OrganizationStatus), default=OrganizationStatus.inactive
    )
    onboarded_at: Mapped[datetime | None]
    # +1 with every event about the organization (its events carry it): a consumer keeping
    # a copy ignores an older or repeated one and sees a gap when one is missing.
    version: Mapped[bigint] = mapped_column(default=1, server_default=sa.text("1"))
