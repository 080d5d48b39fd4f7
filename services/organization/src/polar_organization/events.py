"""The domain events this service publishes, written to the outbox in the caller's transaction.

Payloads are the protobuf messages of polar/organization/v1/events.proto; each is published on
the subject its proto declares (`polar.catalog.subject_of`, generated; the README lists them).
"""

from __future__ import annotations

from polar.catalog import subject_of
from polar.organization.v1 import events_pb2
from polar_db.models.organization import Organization, User, UserOrganization
from polar_kit.outbox import record_event
from sqlalchemy.ext.asyncio import AsyncSession

from . import mappers

SOURCE = "/polar/organization"


async def _next_version(session: AsyncSession, org: Organization) -> None:
    """Every event about an organization after its creation (version 1) carries the next
    version; the row is locked by the change being published."""
    org.version += 1
    await session.flush()


async def organization_created(session: AsyncSession, org: Organization) -> None:
    message = events_pb2.OrganizationCreated(organization=mappers.organization(org))
    await record_event(session, subject_of(message), message, source=SOURCE)


async def organization_updated(session: AsyncSession, org: Organization) -> None:
    await _next_version(session, org)
    message = events_pb2.OrganizationUpdated(organization=mappers.organization(org))
    await record_event(session, subject_of(message), message, source=SOURCE)


async def organization_suspended(session: AsyncSession, org: Organization) -> None:
    await _next_version(session, org)
    message = events_pb2.OrganizationSuspended(organization=mappers.organization(org))
    await record_event(session, subject_of(message), message, source=SOURCE)


async def organization_unsuspended(session: AsyncSession, org: Organization) -> None:
    await _next_version(session, org)
    message = events_pb2.OrganizationUnsuspended(organization=mappers.organization(org))
    await record_event(session, subject_of(message), message, source=SOURCE)


async def organization_deleted(session: AsyncSession, org: Organization) -> None:
    await _next_version(session, org)
    message = events_pb2.OrganizationDeleted(
        version=org.version,
        organization_id=str(org.id),
        external_id=org.external_id,
        installation_id=org.installation_id or 0,
        name=org.name,
    )
    await record_event(session, subject_of(message), message, source=SOURCE)


async def member_added(session: AsyncSession, member: UserOrganization, username: str) -> None:
    message = events_pb2.MemberAdded(member=mappers.member(member, username))
    await record_event(session, subject_of(message), message, source=SOURCE)


async def member_removed(session: AsyncSession, org: Organization, user_id: str) -> None:
    message = events_pb2.MemberRemoved(organization_id=str(org.id), user_id=user_id)
    await record_event(session, subject_of(message), message, source=SOURCE)


async def user_created(session: AsyncSession, user: User) -> None:
    message = events_pb2.UserCreated(user=mappers.user(user))
    await record_event(session, subject_of(message), message, source=SOURCE)


async def user_updated(session: AsyncSession, user: User) -> None:
    message = events_pb2.UserUpdated(user=mappers.user(user))
    await record_event(session, subject_of(message), message, source=SOURCE)
