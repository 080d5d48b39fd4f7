"""Domain errors of the repository service; each carries its gRPC status code."""

from __future__ import annotations

from collections.abc import Iterable

from polar_kit.errors import FailedPrecondition, NotFound


class RepositoryNotFound(NotFound):
    def __init__(self, key: object) -> None:
        super().__init__(f"repository {key} not found")


class OrganizationNotFound(NotFound):
    def __init__(self, key: object) -> None:
        super().__init__(f"organization {key} not found")


class OrganizationsNotFound(NotFound):
    """Several at once: a batch names every unknown organization, not just the first."""

    def __init__(self, ids: Iterable[object]) -> None:
        listed = ", ".join(sorted(str(i) for i in ids))
        super().__init__(f"organizations not found: {listed}")


class IssueNotFound(NotFound):
    def __init__(self, key: object) -> None:
        super().__init__(f"issue {key} not found")


class PullRequestNotFound(NotFound):
    def __init__(self, key: object) -> None:
        super().__init__(f"pull request {key} not found")


class UserNotFound(NotFound):
    def __init__(self, key: object) -> None:
        super().__init__(f"user {key} not found")


class OrganizationSuspended(FailedPrecondition):
    def __init__(self, key: object) -> None:
        super().__init__(
            f"organization {key} is suspended (its GitHub App installation is suspended): "
            "no new rewards or syncs until it is unsuspended on GitHub"
        )
