from enum import StrEnum


class RepositorySyncReadStatus(StrEnum):
    FAILED = "failed"
    IDLE = "idle"
    QUEUED = "queued"
    RUNNING = "running"

    def __str__(self) -> str:
        return str(self.value)
