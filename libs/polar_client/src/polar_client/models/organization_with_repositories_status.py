from enum import StrEnum


class OrganizationWithRepositoriesStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    SUSPENDED = "suspended"
    UNSPECIFIED = "unspecified"

    def __str__(self) -> str:
        return str(self.value)
