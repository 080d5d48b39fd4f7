"""What the repository service knows of the organization service's organizations: its
own read model (decision 0021), kept from the organization service's events and from
the installation webhooks themselves, and repaired from the organization service by RPC."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from polar_db.models.base import (
    REPOSITORY,
    Base,
    OrganizationStatus,
    Platform,
    SoftDeleteMixin,
    TimestampMixin,
    bigint,
    in_schema,
    str_enum,
)


class KnownOrganization(TimestampMixin, SoftDeleteMixin, Base):
    """An organization as the repository service last heard of it. `version` is the
    organization's own (its events carry it); 0 marks a row written from a webhook before
    any event, which every event overrides."""

    __tablename__ = "known_organizations"
    __table_args__ = in_schema(REPOSITORY)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, sort_order=-10)
    platform: Mapped[Platform] = mapped_column(str_enum(Platform))
    external_id: Mapped[bigint] = mapped_column(unique=True)
    name: Mapped[str] = mapped_column(index=True)
    installation_id: Mapped[bigint | None] = mapped_column(index=True)
    status: Mapped[OrganizationStatus] = mapped_column(str_enum(OrganizationStatus))
    version: Mapped[bigint] = mapped_column(default=0, server_default=sa.text("0"))
