from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..models.webhook_accepted_status import WebhookAcceptedStatus
from ..types import UNSET, Unset

T = TypeVar("T", bound="WebhookAccepted")


@_attrs_define
class WebhookAccepted:
    """
    Attributes:
        delivery (str):
        status (WebhookAcceptedStatus):
        duplicate (bool | Unset): JetStream already held this delivery. Default: False.
    """

    delivery: str
    status: WebhookAcceptedStatus
    duplicate: bool | Unset = False

    def to_dict(self) -> dict[str, Any]:
        delivery = self.delivery

        status = self.status.value

        duplicate = self.duplicate

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "delivery": delivery,
                "status": status,
            }
        )
        if duplicate is not UNSET:
            field_dict["duplicate"] = duplicate

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        delivery = d.pop("delivery")

        status = WebhookAcceptedStatus(d.pop("status"))

        duplicate = d.pop("duplicate", UNSET)

        webhook_accepted = cls(
            delivery=delivery,
            status=status,
            duplicate=duplicate,
        )

        return webhook_accepted
