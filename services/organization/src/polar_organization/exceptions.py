"""Domain errors of the organization service; each carries its gRPC status code."""

from __future__ import annotations

from polar_kit.errors import Aborted, AlreadyExists, FailedPrecondition, NotFound


class OrganizationNotFound(NotFound):
    def __init__(self, key: object) -> None:
        super().__init__(f"organization {key} not found")


class UserNotFound(NotFound):
    def __init__(self, key: object) -> None:
        super().__init__(f"user {key} not found")


class InstallationNotFound(NotFound):
    """Also raised when the installation exists but the user cannot see it: a guessed id
    must not reveal that it exists."""

    def __init__(self, installation_id: int) -> None:
        super().__init__(f"installation {installation_id} not found for this user")


class NotAMember(NotFound):
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
