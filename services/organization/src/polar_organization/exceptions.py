"""Domain errors of the organization service; each carries its gRPC status code."""

from __future__ import annotations

from polar_kit.errors import Aborted, AlreadyExists, FailedPrecondition, NotFound


class OrganizationNotFound(NotFound):
    RESOURCE_TYPE = "polar.organization.v1.Organization"

    def __init__(self, key: object) -> None:
        super().__init__(f"organization {key} not found", resource_name=str(key))


class UserNotFound(NotFound):
    RESOURCE_TYPE = "polar.organization.v1.User"

    def __init__(self, key: object) -> None:
        super().__init__(f"user {key} not found", resource_name=str(key))


class InstallationNotFound(NotFound):
    """Also raised when the installation exists but the user cannot see it: a guessed id
    must not reveal that it exists."""

    RESOURCE_TYPE = "github.Installation"

    def __init__(self, installation_id: int) -> None:
        super().__init__(
            f"installation {installation_id} not found for this user",
            resource_name=str(installation_id),
        )


class NotAMember(NotFound):
    RESOURCE_TYPE = "polar.organization.v1.Member"

    def __init__(self) -> None:
        super().__init__("the user is not a member of this organization")


class AlreadyAMember(AlreadyExists):
    def __init__(self) -> None:
        super().__init__("the user is already a member of this organization")


class NoGitHubAccount(FailedPrecondition):
    def __init__(self) -> None:
        super().__init__("the user has no usable GitHub sign-in: sign in with GitHub (again)")


class NotInstalled(FailedPrecondition):
    def __init__(self) -> None:
        super().__init__("the organization has no GitHub App installation")


class UsernameTaken(AlreadyExists):
    def __init__(self, username: str) -> None:
        super().__init__(f"username {username!r} belongs to another user")


class SignInConflict(Aborted):
    def __init__(self) -> None:
        super().__init__("concurrent sign-ins of this GitHub user kept colliding; retry")


class UserDeleted(FailedPrecondition):
    def __init__(self) -> None:
        super().__init__("the Polar account of this GitHub user was deleted")
