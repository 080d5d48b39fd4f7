"""Pure conversions between ORM rows and protobuf messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp
from polar.common.v1 import common_pb2
from polar.organization.v1 import organization_pb2
from polar_db.models import OrganizationStatus, Platform
from polar_db.models.organization import Organization, User, UserOrganization
from polar_kit.errors import InvalidArgument

_PLATFORM_TO_PROTO = {Platform.github: common_pb2.PLATFORM_GITHUB}
_STATUS_TO_PROTO = {
    OrganizationStatus.inactive: organization_pb2.ORGANIZATION_STATUS_INACTIVE,
    OrganizationStatus.active: organization_pb2.ORGANIZATION_STATUS_ACTIVE,
    OrganizationStatus.suspended: organization_pb2.ORGANIZATION_STATUS_SUSPENDED,
}


def platform_from_proto(value: common_pb2.Platform.ValueType) -> Platform:
    for platform, proto in _PLATFORM_TO_PROTO.items():
        if proto == value:
            return platform
    raise InvalidArgument("platform is required (PLATFORM_GITHUB)", field="platform")


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def struct(value: dict[str, Any] | None) -> Struct | None:
    if value is None:
        return None
    s = Struct()
    s.update(value)
    return s


def organization(org: Organization) -> organization_pb2.Organization:
    return organization_pb2.Organization(
        id=str(org.id),
        platform=_PLATFORM_TO_PROTO[org.platform],
        name=org.name,
        external_id=org.external_id,
        avatar_url=org.avatar_url or "",
        is_personal=org.is_personal,
        installation_id=org.installation_id or 0,
        status=_STATUS_TO_PROTO[org.status],
        installation_created_at=timestamp(org.installation_created_at),
        installation_updated_at=timestamp(org.installation_updated_at),
        installation_suspended_at=timestamp(org.installation_suspended_at),
        installation_suspended_by=org.installation_suspended_by or "",
        installation_permissions=struct(org.installation_permissions),
        created_at=timestamp(org.created_at),
        modified_at=timestamp(org.modified_at),
        version=org.version,
    )


def user(u: User) -> organization_pb2.User:
    return organization_pb2.User(
        id=str(u.id),
        username=u.username,
        email=u.email or "",
        email_verified=u.email_verified,
        avatar_url=u.avatar_url or "",
        created_at=timestamp(u.created_at),
        modified_at=timestamp(u.modified_at),
        is_superuser=u.is_superuser,
        profile=struct(u.profile or None),
    )


def member(m: UserOrganization, username: str) -> organization_pb2.Member:
    return organization_pb2.Member(
        user_id=str(m.user_id),
        organization_id=str(m.organization_id),
        username=username,
        created_at=timestamp(m.created_at),
    )
