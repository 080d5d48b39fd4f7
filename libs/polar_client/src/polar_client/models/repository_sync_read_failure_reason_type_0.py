from enum import StrEnum


class RepositorySyncReadFailureReasonType0(StrEnum):
    ACCESS_REVOKED = "access_revoked"
    GITHUB_UNAVAILABLE = "github_unavailable"
    INTERNAL = "internal"
    RATE_LIMITED = "rate_limited"
    REPOSITORY_GONE = "repository_gone"

    def __str__(self) -> str:
        return str(self.value)
