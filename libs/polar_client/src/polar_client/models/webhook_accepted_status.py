from enum import StrEnum


class WebhookAcceptedStatus(StrEnum):
    ACCEPTED = "accepted"
    PONG = "pong"

    def __str__(self) -> str:
        return str(self.value)
