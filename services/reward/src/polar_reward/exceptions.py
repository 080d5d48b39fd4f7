"""Domain errors of the reward service; each carries its gRPC status code."""

from __future__ import annotations

from typing import ClassVar

import grpc
from polar_kit.errors import DomainError, FailedPrecondition, NotFound


class RewardNotFound(NotFound):
    RESOURCE_TYPE = "polar.reward.v1.Reward"

    def __init__(self, key: object) -> None:
        super().__init__(f"reward {key} not found", resource_name=str(key))


class IssueNotFound(NotFound):
    RESOURCE_TYPE = "polar.repository.v1.Issue"

    def __init__(self, key: object) -> None:
        super().__init__(f"issue {key} not found", resource_name=str(key))


class RepositoryNotFound(NotFound):
    RESOURCE_TYPE = "polar.repository.v1.Repository"

    def __init__(self, key: object) -> None:
        super().__init__(f"repository {key} not found", resource_name=str(key))


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


class UpstreamUnavailable(DomainError):
    """A service a reward is checked against did not answer: the caller may retry."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNAVAILABLE

    def __init__(self, service: str) -> None:
        super().__init__(f"the {service} service is unavailable; retry")
