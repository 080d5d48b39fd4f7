"""All business rules of the organization domain.

Functions take a session and plain values (never protobuf or gRPC types) and never commit:
the caller owns the unit of work (one per RPC, one per consumed message).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from polar_db import ids
from polar_db.models import OrganizationStatus, Platform
from polar_db.models.organization import OAuthAccount, Organization, User, UserOrganization
from polar_kit import paging
from polar_kit.paging import Page
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from . import events
from . import repository as repo
from .exceptions import (
    AlreadyAMember,
    InstallationNotFound,
    NoGitHubAccount,
    NotAMember,
    NotInstalled,
    OrganizationNotFound,
    SignInConflict,
    UserDeleted,
    UsernameTaken,
    UserNotFound,
)
from .github import GitHubClient, Installation
from .tokens import TokenCipher

# --- organizations -------------------------------------------------------------------------


async def get_organization(session: AsyncSession, id: uuid.UUID) -> Organization:
    org = await repo.get_organization(session, id)
    if org is None:
        raise OrganizationNotFound(id)
    return org


async def lookup_by_name(session: AsyncSession, platform: Platform, name: str) -> Organization:
    org = await repo.get_organization_by(
        session, Organization.platform == platform, Organization.name == name
    )
    if org is None:
        raise OrganizationNotFound(f"named {name!r}")
    return org


async def lookup_by_external_id(
    session: AsyncSession, platform: Platform, external_id: int
) -> Organization:
    org = await repo.get_organization_by(
        session, Organization.platform == platform, Organization.external_id == external_id
    )
    if org is None:
        raise OrganizationNotFound(f"with external id {external_id}")
    return org


async def lookup_by_installation_id(session: AsyncSession, installation_id: int) -> Organization:
    org = await repo.get_organization_by(session, Organization.installation_id == installation_id)
    if org is None:
        raise OrganizationNotFound(f"with installation id {installation_id}")
    return org


async def list_organizations(
    session: AsyncSession, *, member_user_id: uuid.UUID | None, page_size: int, page_token: str
) -> Page[Organization]:
    after = paging.decode_token(page_token, paging.text, paging.uuid_)
    rows = await repo.list_organizations(
        session, member_user_id=member_user_id, after=after, limit=page_size + 1
    )
    return paging.page(rows, page_size, lambda o: (o.name, o.id))


def _installation_values(installation: Installation) -> dict[str, Any]:
    suspended = installation.suspended_at is not None
    return {
        # Derived, so the repository service files its repositories under it unasked.
        "id": ids.organization_id(Platform.github, installation.account_id),
        "platform": Platform.github,
        "name": installation.account_login,
        "external_id": installation.account_id,
        "avatar_url": installation.account_avatar_url,
        "is_personal": installation.is_personal,
        "installation_id": installation.id,
        "installation_created_at": installation.created_at,
        "installation_updated_at": installation.updated_at,
        "installation_suspended_at": installation.suspended_at,
        "installation_suspended_by": installation.suspended_by if suspended else None,
        "installation_permissions": installation.permissions,
        "status": OrganizationStatus.suspended if suspended else OrganizationStatus.active,
    }


async def upsert_installation(
    session: AsyncSession, installation: Installation, *, force: bool = False
) -> Organization | None:
    """Mirror a GitHub installation as an organization; None when the update was stale.

    `force` is for GitHub's own current answer (InstallOrganization): it wins over anything
    held, including a tombstone.
    """
    result = await repo.upsert_organization(
        session, _installation_values(installation), force=force
    )
    if result is None:
        return None
    org, created = result
    await (events.organization_created if created else events.organization_updated)(session, org)
    return org


async def install(
    session: AsyncSession,
    github: GitHubClient,
    cipher: TokenCipher,
    *,
    user_id: uuid.UUID,
    installation_id: int,
) -> Organization:
    """Install for a user: only an installation GitHub shows that user can be claimed."""
    user = await repo.get_user(session, user_id)
    if user is None:
        raise UserNotFound(user_id)
    account = await repo.get_user_oauth_account(session, user.id, Platform.github)
    token = cipher.decrypt(account.access_token) if account is not None else None
    if token is None:  # never signed in, or a token no configured key opens
        raise NoGitHubAccount()
    installation = await github.find_user_installation(token, installation_id)
    if installation is None:
        raise InstallationNotFound(installation_id)
    org = await upsert_installation(session, installation, force=True)
    assert org is not None  # forced upserts are never skipped
    await _add_member(session, org, user)
    return org


def _is_stale(org: Organization, installation: Installation) -> bool:
    held, incoming = org.installation_updated_at, installation.updated_at
    return held is not None and incoming is not None and incoming < held


async def suspend_installation(session: AsyncSession, installation: Installation) -> Organization:
    """installation.suspend; raises OrganizationNotFound for an installation not seen yet."""
    org = await _installation_org(session, installation.id)
    if org.deleted_at is None and not _is_stale(org, installation):
        await _suspend(
            session,
            org,
            by=installation.suspended_by,
            at=installation.suspended_at or datetime.now(UTC),
            updated_at=installation.updated_at,
        )
    return org


async def unsuspend_installation(session: AsyncSession, installation: Installation) -> Organization:
    org = await _installation_org(session, installation.id)
    if org.deleted_at is None and not _is_stale(org, installation):
        await _unsuspend(session, org, updated_at=installation.updated_at)
    return org


async def accept_permissions(session: AsyncSession, installation: Installation) -> Organization:
    """installation.new_permissions_accepted: record the permissions the app now has."""
    org = await _installation_org(session, installation.id)
    if org.deleted_at is None and not _is_stale(org, installation):
        org.installation_permissions = installation.permissions
        org.installation_updated_at = installation.updated_at or org.installation_updated_at
        await session.flush()
        await events.organization_updated(session, org)
    return org


async def delete_installation(session: AsyncSession, installation_id: int) -> Organization:
    org = await _installation_org(session, installation_id)
    if org.deleted_at is None:
        await delete_organization(session, org)
    return org


async def _installation_org(session: AsyncSession, installation_id: int) -> Organization:
    # Tombstones included and row locked: concurrent deliveries for one installation serialize.
    org = await repo.get_organization_by(
        session,
        Organization.installation_id == installation_id,
        include_deleted=True,
        for_update=True,
    )
    if org is None:
        raise OrganizationNotFound(f"with installation id {installation_id}")
    return org


async def suspend(session: AsyncSession, org: Organization, *, by: str | None) -> Organization:
    if org.installation_id is None:
        raise NotInstalled()
    if org.status != OrganizationStatus.suspended:
        await _suspend(session, org, by=by, at=datetime.now(UTC), updated_at=None)
    return org


async def unsuspend(session: AsyncSession, org: Organization) -> Organization:
    if org.installation_id is None:
        raise NotInstalled()
    if org.status == OrganizationStatus.suspended:
        await _unsuspend(session, org, updated_at=None)
    return org


async def _suspend(
    session: AsyncSession,
    org: Organization,
    *,
    by: str | None,
    at: datetime,
    updated_at: datetime | None,
) -> None:
    org.status = OrganizationStatus.suspended
    org.installation_suspended_at = at
    org.installation_suspended_by = by
    org.installation_updated_at = updated_at or org.installation_updated_at
    await session.flush()
    await events.organization_suspended(session, org)


async def _unsuspend(
    session: AsyncSession, org: Organization, *, updated_at: datetime | None
) -> None:
    org.status = OrganizationStatus.active
    org.installation_suspended_at = None
    org.installation_suspended_by = None
    org.installation_updated_at = updated_at or org.installation_updated_at
    await session.flush()
    await events.organization_unsuspended(session, org)


async def delete_organization(session: AsyncSession, org: Organization) -> None:
    """Soft delete: the row stays as a tombstone, memberships go, and the deleted event tells
    the repository service to remove the organization's repositories, issues and rewards."""
    org.deleted_at = datetime.now(UTC)
    org.status = OrganizationStatus.inactive
    await session.flush()
    for user_id in await repo.remove_all_members(session, org.id):
        await events.member_removed(session, org, str(user_id))
    await events.organization_deleted(session, org)


# --- memberships ---------------------------------------------------------------------------


async def add_member(
    session: AsyncSession, organization_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[UserOrganization, str]:
    org = await get_organization(session, organization_id)
    user = await get_user(session, user_id)
    member = await _add_member(session, org, user)
    if member is None:
        raise AlreadyAMember()
    return member, user.username


async def _add_member(
    session: AsyncSession, org: Organization, user: User
) -> UserOrganization | None:
    member = await repo.add_member(session, org.id, user.id)
    if member is not None:
        await events.member_added(session, member, user.username)
    return member


async def add_sender_as_member(
    session: AsyncSession, org: Organization, github_user_id: int
) -> None:
    """Whoever installed the app on GitHub becomes a member, if they have signed in to Polar."""
    account = await repo.get_oauth_account(session, Platform.github, str(github_user_id))
    user = await repo.get_user(session, account.user_id) if account else None
    if user is not None:
        await _add_member(session, org, user)


async def remove_member(
    session: AsyncSession, organization_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    org = await get_organization(session, organization_id)
    if not await repo.remove_member(session, org.id, user_id):
        raise NotAMember()
    await events.member_removed(session, org, str(user_id))


async def list_members(
    session: AsyncSession, organization_id: uuid.UUID, *, page_size: int, page_token: str
) -> Page[tuple[UserOrganization, str]]:
    await get_organization(session, organization_id)
    after = paging.decode_token(page_token, paging.uuid_)
    rows = await repo.list_members(
        session, organization_id, after=after[0] if after else None, limit=page_size + 1
    )
    return paging.page(rows, page_size, lambda row: (row[0].user_id,))


async def check_membership(
    session: AsyncSession, organization_id: uuid.UUID, user_id: uuid.UUID
) -> bool:
    is_member = await repo.is_member(session, organization_id, user_id)
    if is_member is None:
        raise OrganizationNotFound(organization_id)
    return is_member


# --- users ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GitHubProfile:
    id: int
    login: str
    email: str | None
    email_verified: bool
    avatar_url: str | None
    access_token: str
    access_token_expires_at: int | None
    refresh_token: str | None
    public_profile: dict[str, Any] | None = None  # GitHub's (login, name, avatar_url...)


async def get_user(session: AsyncSession, id: uuid.UUID) -> User:
    user = await repo.get_user(session, id)
    if user is None:
        raise UserNotFound(id)
    return user


async def delete_user(session: AsyncSession, user_id: uuid.UUID) -> None:
    """A superuser's act (v1 DELETE /users/{id}): the user, their GitHub account link and
    memberships go (member_removed for each); their rewards stay, without a backer. A later
    sign-in with GitHub creates a new user."""
    user = await get_user(session, user_id)
    for organization_id in await repo.remove_user_memberships(session, user.id):
        org = await session.get(Organization, organization_id)
        if org is not None:
            await events.member_removed(session, org, str(user.id))
    await session.delete(user)
    await session.flush()


async def set_superuser(session: AsyncSession, key: str, value: bool) -> User:
    """An operator's act (python -m polar_organization.superuser): the user, by id or
    username, may (or may no longer) use the user-admin routes."""
    try:
        user = await repo.get_user(session, uuid.UUID(key))
    except ValueError:
        user = await repo.get_user_by(session, User.username == key)
    if user is None:
        raise UserNotFound(key)
    if user.is_superuser != value:
        user.is_superuser = value
        await session.flush()
        await events.user_updated(session, user)
    return user


SIGN_IN_ATTEMPTS = 3


async def upsert_user_from_github(
    session: AsyncSession, profile: GitHubProfile, cipher: TokenCipher
) -> tuple[User, bool]:
    """Sign-in with GitHub: find the user by GitHub account, else by verified email, else
    create one; then store the profile and the token (encrypted). Returns (user, created).

    Concurrent sign-ins of one person race to create the same user or account: the loser
    hits a unique constraint once the winner commits (or sees the winner's user appear
    between two of its reads), rolls its savepoint back and runs again, now finding what
    the winner wrote."""
    for _ in range(SIGN_IN_ATTEMPTS - 1):
        try:
            async with session.begin_nested():
                return await _upsert_user_from_github(session, profile, cipher)
        except (IntegrityError, UsernameTaken):
            continue
    try:
        async with session.begin_nested():
            return await _upsert_user_from_github(session, profile, cipher)
    except IntegrityError:
        raise SignInConflict() from None


async def _upsert_user_from_github(
    session: AsyncSession, profile: GitHubProfile, cipher: TokenCipher
) -> tuple[User, bool]:
    account = await repo.get_oauth_account(session, Platform.github, str(profile.id))
    user = None
    if account is not None:
        user = await repo.get_user(session, account.user_id, include_deleted=True)
        if user is not None and user.deleted_at is not None:
            raise UserDeleted()
    if user is None and profile.email and profile.email_verified:
        user = await repo.get_user_by(session, User.email == profile.email)
    # Look before adding anything: a query would autoflush a half-built user.
    taken = await repo.get_user_by(session, User.username == profile.login)
    if taken is not None and taken is not user:
        raise UsernameTaken(profile.login)
    # An email another user already holds stays theirs (emails are unique).
    owner = await repo.get_user_by(session, User.email == profile.email) if profile.email else None

    created = user is None
    if user is None:
        user = User(username=profile.login)
        session.add(user)
    user.username = profile.login
    user.avatar_url = profile.avatar_url
    if profile.public_profile is not None:
        user.profile = profile.public_profile
    if profile.email and owner in (None, user):
        user.email = profile.email
        user.email_verified = profile.email_verified
    await session.flush()

    if account is None:
        account = OAuthAccount(
            platform=Platform.github, account_id=str(profile.id), user_id=user.id
        )
        session.add(account)
    account.user_id = user.id
    account.account_email = profile.email or ""
    account.access_token = cipher.encrypt(profile.access_token)
    account.expires_at = profile.access_token_expires_at
    account.refresh_token = cipher.encrypt(profile.refresh_token) if profile.refresh_token else None
    await session.flush()

    await (events.user_created if created else events.user_updated)(session, user)
    return user, created
