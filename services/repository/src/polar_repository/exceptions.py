"""Domain errors of the repository service; each carries its gRPC status code."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import grpc
from polar_kit.errors import DomainError, FailedPrecondition, NotFound


class RepositoryNotFound(NotFound):
    RESOURCE_TYPE = "polar.repository.v1.Repository"

    def __init__(self, key: object) -> None:
        super().__init__(f"repository {key} not found", resource_name=str(key))


class OrganizationNotFound(NotFound):
    RESOURCE_TYPE = "polar.organization.v1.Organization"

    def __init__(self, key: object) -> None:
        super().__init__(f"organization {key} not found", resource_name=str(key))


class OrganizationsNotFound(NotFound):
    """Several at once: a batch names every unknown organization, not just the first."""

    RESOURCE_TYPE = "polar.organization.v1.Organization"

    def __init__(self, ids: Iterable[object]) -> None:
        listed = ", ".join(sorted(str(i) for i in ids))
        super().__init__(f"organizations not found: {listed}", resource_name=listed)


class IssueNotFound(NotFound):
    RESOURCE_TYPE = "polar.repository.v1.Issue"

    def __init__(self, key: object) -> None:
        super().__init__(f"issue {key} not found", resource_name=str(key))


class PullRequestNotFound(NotFound):
    RESOURCE_TYPE = "polar.repository.v1.PullRequest"

    def __init__(self, key: object) -> None:
        super().__init__(f"pull request {key} not found", resource_name=str(key))


class UserNotFound(NotFound):
    RESOURCE_TYPE = "polar.organization.v1.User"

    def __init__(self, key: object) -> None:
        super().__init__(f"user {key} not found", resource_name=str(key))


class OrganizationSuspended(FailedPrecondition):
    def __init__(self, key: object) -> None:
        super().__init__(
            f"organization {key} is suspended (its GitHub App installation is suspended): "
            "no new rewards or syncs until it is unsuspended on GitHub"
        )


class MovedToRewardService(DomainError):
    """The deprecated reward RPCs of this service (decision 0027)."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNIMPLEMENTED

    def __init__(self, method: str) -> None:
        super().__init__(
            f"{method} moved to polar.reward.v1.RewardService (the reward service); "
            "this deprecated method is no longer served here"
        )
