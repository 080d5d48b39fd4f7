"""What the reward service asks the other services, by RPC with its own identity (never by
reading their tables): an issue's repository and organization, whether an organization is
suspended, whether a backer exists. `Directory` is the interface service.py uses."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import grpc
from polar.organization.v1 import organization_pb2
from polar.organization.v1 import organization_service_pb2 as org_pb
from polar.organization.v1.organization_service_pb2_grpc import OrganizationServiceStub
from polar.repository.v1 import repository_service_pb2 as repo_pb
from polar.repository.v1.repository_service_pb2_grpc import RepositoryServiceStub
from polar_kit.grpc.auth import REWARD, channel, credentials

from .exceptions import UpstreamUnavailable
from .settings import RewardSettings

if TYPE_CHECKING:
    from polar.organization.v1.organization_service_pb2_grpc import OrganizationServiceAsyncStub
    from polar.repository.v1.repository_service_pb2_grpc import RepositoryServiceAsyncStub

# Answers that mean "no such thing" rather than "try again".
_ABSENT = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


@dataclass(frozen=True)
class IssueRef:
    id: uuid.UUID
    repository_id: uuid.UUID
    organization_id: uuid.UUID


class Directory(Protocol):
    async def issue(self, issue_id: uuid.UUID) -> IssueRef | None: ...
    async def repository_exists(self, repository_id: uuid.UUID) -> bool: ...
    async def organization_suspended(self, organization_id: uuid.UUID) -> bool: ...
    async def user_exists(self, user_id: uuid.UUID) -> bool: ...


class GrpcDirectory:
    """The repository and organization services over gRPC; UNAVAILABLE is retried by the
    channel, and an answer that never comes becomes UNAVAILABLE for our caller."""

    def __init__(self, settings: RewardSettings) -> None:
        # Its identity in the others' allow-lists.
        creds = credentials(REWARD, settings)
        self.deadline = settings.grpc_deadline_seconds
        self._channels = [
            channel(settings.repository_grpc_target, creds),
            channel(settings.organization_grpc_target, creds),
        ]
        self.repo: RepositoryServiceAsyncStub = RepositoryServiceStub(self._channels[0])
        self.org: OrganizationServiceAsyncStub = OrganizationServiceStub(self._channels[1])

    async def issue(self, issue_id: uuid.UUID) -> IssueRef | None:
        try:
            found = await self.repo.GetIssue(
                repo_pb.GetIssueRequest(id=str(issue_id)), timeout=self.deadline
            )
        except grpc.aio.AioRpcError as e:
            _absent(e, "repository")
            return None
        issue = found.issue
        return IssueRef(
            uuid.UUID(issue.id), uuid.UUID(issue.repository_id), uuid.UUID(issue.organization_id)
        )

    async def repository_exists(self, repository_id: uuid.UUID) -> bool:
        try:
            await self.repo.GetRepository(
                repo_pb.GetRepositoryRequest(id=str(repository_id)), timeout=self.deadline
            )
        except grpc.aio.AioRpcError as e:
            _absent(e, "repository")
            return False
        return True

    async def organization_suspended(self, organization_id: uuid.UUID) -> bool:
        try:
            found = await self.org.GetOrganization(
                org_pb.GetOrganizationRequest(id=str(organization_id)), timeout=self.deadline
            )
        except grpc.aio.AioRpcError as e:
            _absent(e, "organization")
            return False  # gone: the issue lookup already answered for it
        return bool(found.organization.status == organization_pb2.ORGANIZATION_STATUS_SUSPENDED)

    async def user_exists(self, user_id: uuid.UUID) -> bool:
        try:
            await self.org.GetUser(org_pb.GetUserRequest(id=str(user_id)), timeout=self.deadline)
        except grpc.aio.AioRpcError as e:
            _absent(e, "organization")
            return False
        return True

    async def close(self) -> None:
        for ch in self._channels:
            await ch.close()


def _absent(error: grpc.aio.AioRpcError, service: str) -> None:
    """Returns for "not found"; anything else is the other service's trouble, not the
    caller's: UNAVAILABLE, so the caller may retry."""
    if error.code() not in _ABSENT:
        raise UpstreamUnavailable(service) from error
