from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from attrs import define as _attrs_define

if TYPE_CHECKING:
    from ..models.money_input import MoneyInput


T = TypeVar("T", bound="RewardCreate")


@_attrs_define
class RewardCreate:
    """
    Attributes:
        amount (MoneyInput):
        issue_id (UUID): Id of the issue.
    """

    amount: MoneyInput
    issue_id: UUID

    def to_dict(self) -> dict[str, Any]:
        amount = self.amount.to_dict()

        issue_id = str(self.issue_id)

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "amount": amount,
                "issue_id": issue_id,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.money_input import MoneyInput

        d = dict(src_dict)
        amount = MoneyInput.from_dict(d.pop("amount"))

        issue_id = UUID(d.pop("issue_id"))

        reward_create = cls(
            amount=amount,
            issue_id=issue_id,
        )

        return reward_create
