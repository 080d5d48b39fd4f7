"""Users, their OAuth accounts and their organization memberships."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ForeignKey, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from polar_db.models.base import (
    ORGANIZATION,
    Base,
    IdMixin,
    Platform,
    SoftDeleteMixin,
    TimestampMixin,
    in_schema,
    str_enum,
)


class User(IdMixin, TimestampMixin, SoftDeleteMixin, Base):
    __tablename__ = "users"
    __table_args__ = in_schema(ORGANIZATION)

    username: Mapped[str] = mapped_column(unique=True)
    email: Mapped[str | None] = mapped_column(unique=True)
    email_verified: Mapped[bool] = mapped_column(default=False)
    avatar_url: Mapped[str | None]
    profile: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # May use the v1 user-admin routes; granted by an operator, never through the API.
    is_superuser: Mapped[bool] = mapped_column(default=False, server_default=sa.false())


class OAuthAccount(IdMixin, TimestampMixin, Base):
    __tablename__ = "oauth_accounts"
    __table_args__ = in_schema(ORGANIZATION, UniqueConstraint("platform", "account_id"))

    platform: Mapped[Platform] = mapped_column(str_enum(Platform))
    access_token: Mapped[str]
    expires_at: Mapped[int | None]
    refresh_token: Mapped[str | None]
    account_id: Mapped[str]
    account_email: Mapped[str]
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organization.users.id", ondelete="CASCADE"), index=True
    )


class UserOrganization(TimestampMixin, Base):
    __tablename__ = "user_organizations"
    __table_args__ = in_schema(ORGANIZATION)

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organization.users.id", ondelete="CASCADE"), primary_key=True
    )
    # The PK (user_id, organization_id) serves lookups by user; this index serves "members of".
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organization.organizations.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    )
