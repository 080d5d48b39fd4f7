"""The organization domain's queries, and nothing else."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from polar_db.models import Platform
from polar_db.models.organization import OAuthAccount, Organization, User, UserOrganization
from polar_db.upsert import excluded, upsert_many
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

# --- organizations -------------------------------------------------------------------------


async def get_organization(session: AsyncSession, id: uuid.UUID) -> Organization | None:
    return await session.scalar(
        sa.select(Organization).where(Organization.id == id, Organization.deleted_at.is_(None))
    )


async def get_organization_by(
    session: AsyncSession,
    *where: sa.ColumnElement[bool],
    include_deleted: bool = False,
    for_update: bool = False,
) -> Organization | None:
    query = sa.select(Organization).where(*where)
    if not include_deleted:
        query = query.where(Organization.deleted_at.is_(None))
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def list_organizations(
    session: AsyncSession,
    *,
    member_user_id: uuid.UUID | None,
    after: tuple[str, uuid.UUID] | None,
    limit: int,
) -> Sequence[Organization]:
    """Keyset page ordered by (name, id)."""
    query = sa.select(Organization).where(Organization.deleted_at.is_(None))
    if member_user_id is not None:
        # A soft-deleted user is a member of nothing.
        query = (
            query.join(UserOrganization, UserOrganization.organization_id == Organization.id)
            .join(User, User.id == UserOrganization.user_id)
            .where(UserOrganization.user_id == member_user_id, User.deleted_at.is_(None))
        )
    if after is not None:
        query = query.where(sa.tuple_(Organization.name, Organization.id) > sa.tuple_(*after))
    query = query.order_by(Organization.name, Organization.id).limit(limit)
    return (await session.scalars(query)).all()


async def upsert_organization(
    session: AsyncSession, values: dict[str, Any], *, force: bool
) -> tuple[Organization, bool] | None:
    """Insert or update by external_id; returns (row, created) or None when skipped as stale.

    Unless `force`d, an update is skipped when it is older than what we hold (GitHub's
    installation updated_at) or when it is about an installation we already saw deleted,
    so redelivered and reordered webhooks cannot undo newer state or resurrect a tombstone.
    """
    new = excluded(Organization)
    held = Organization.__table__.c
    same_installation = held.installation_id == new.installation_id
    fresh = sa.and_(
        sa.not_(sa.and_(held.deleted_at.is_not(None), same_installation)),
        sa.or_(
            held.installation_updated_at.is_(None),
            new.installation_updated_at.is_(None),
            sa.not_(same_installation),
            new.installation_updated_at >= held.installation_updated_at,
        ),
    )
    rows = await upsert_many(
        session,
        Organization,
        [values | {"deleted_at": None}],
        conflict=["external_id"],
        where=None if force else fresh,
    )
    return (rows[0].row, rows[0].created) if rows else None


# --- memberships ---------------------------------------------------------------------------


async def add_member(
    session: AsyncSession, organization_id: uuid.UUID, user_id: uuid.UUID
) -> UserOrganization | None:
    """None when the user was already a member."""
    stmt = (
        insert(UserOrganization)
        .values(organization_id=organization_id, user_id=user_id)
        .on_conflict_do_nothing()
        .returning(UserOrganization)
    )
    return (await session.scalars(stmt)).one_or_none()


async def remove_member(
    session: AsyncSession, organization_id: uuid.UUID, user_id: uuid.UUID
) -> bool:
    result = await session.execute(
        sa.delete(UserOrganization)
        .where(
            UserOrganization.organization_id == organization_id,
            UserOrganization.user_id == user_id,
        )
        .returning(UserOrganization.user_id)
    )
    return result.first() is not None


async def remove_user_memberships(session: AsyncSession, user_id: uuid.UUID) -> list[uuid.UUID]:
    """Removes every membership of the user; the organization ids they were in."""
    result = await session.execute(
        sa.delete(UserOrganization)
        .where(UserOrganization.user_id == user_id)
        .returning(UserOrganization.organization_id)
    )
    return list(result.scalars())


async def remove_all_members(session: AsyncSession, organization_id: uuid.UUID) -> list[uuid.UUID]:
    result = await session.execute(
        sa.delete(UserOrganization)
        .where(UserOrganization.organization_id == organization_id)
        .returning(UserOrganization.user_id)
    )
    return list(result.scalars())


async def list_members(
    session: AsyncSession, organization_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
) -> Sequence[tuple[UserOrganization, str]]:
    query = (
        sa.select(UserOrganization, User.username)
        .join(User, User.id == UserOrganization.user_id)
        .where(UserOrganization.organization_id == organization_id, User.deleted_at.is_(None))
    )
    if after is not None:
        query = query.where(UserOrganization.user_id > after)
    query = query.order_by(UserOrganization.user_id).limit(limit)
    return [(m, name) for m, name in (await session.execute(query)).all()]


async def is_member(
    session: AsyncSession, organization_id: uuid.UUID, user_id: uuid.UUID
) -> bool | None:
    """True/False for a live organization; None when the organization does not exist.
    A soft-deleted user is a member of nothing."""
    member = (
        sa.select(UserOrganization.user_id)
        .join(User, User.id == UserOrganization.user_id)
        .where(
            UserOrganization.organization_id == Organization.id,
            UserOrganization.user_id == user_id,
            User.deleted_at.is_(None),
        )
        .exists()
    )
    result: bool | None = await session.scalar(
        sa.select(member).where(
            Organization.id == organization_id, Organization.deleted_at.is_(None)
        )
    )
    return result


# --- users ---------------------------------------------------------------------------------


async def get_user(
    session: AsyncSession, id: uuid.UUID, *, include_deleted: bool = False
) -> User | None:
    query = sa.select(User).where(User.id == id)
    if not include_deleted:
        query = query.where(User.deleted_at.is_(None))
    return await session.scalar(query)


async def get_user_by(session: AsyncSession, *where: sa.ColumnElement[bool]) -> User | None:
    return await session.scalar(sa.select(User).where(*where, User.deleted_at.is_(None)))


async def get_oauth_account(
    session: AsyncSession, platform: Platform, account_id: str
) -> OAuthAccount | None:
    return await session.scalar(
        sa.select(OAuthAccount).where(
            OAuthAccount.platform == platform, OAuthAccount.account_id == account_id
        )
    )


async def get_user_oauth_account(
    session: AsyncSession, user_id: uuid.UUID, platform: Platform
) -> OAuthAccount | None:
    return await session.scalar(
        sa.select(OAuthAccount).where(
            OAuthAccount.user_id == user_id, OAuthAccount.platform == platform
        )
    )


async def all_oauth_accounts(session: AsyncSession) -> Sequence[OAuthAccount]:
    """Every account, locked: re-encrypting must not overwrite a concurrent sign-in."""
    return (await session.scalars(sa.select(OAuthAccount).with_for_update())).all()
