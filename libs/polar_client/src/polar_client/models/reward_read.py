from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define

if TYPE_CHECKING:
    from ..models.money import Money


T = TypeVar("T", bound="RewardRead")


@_attrs_define
class RewardRead:
    """
    Attributes:
        amount (Money):
        backer_user_id (None | str):
        created_at (datetime.datetime | None):
        email (None | str):
        id (str):
        issue_id (str):
        organization_id (str):
        repository_id (str):
        state (str):
    """

    amount: Money
    backer_user_id: str | None
    created_at: datetime.datetime | None
    email: str | None
    id: str
    issue_id: str
    organization_id: str
    repository_id: str
    state: str

    def to_dict(self) -> dict[str, Any]:
        amount = self.amount.to_dict()

        backer_user_id: str | None
        backer_user_id = self.backer_user_id

        created_at: str | None
        if isinstance(self.created_at, datetime.datetime):
            created_at = self.created_at.isoformat()
        else:
            created_at = self.created_at

        email: str | None
        email = self.email

        id = self.id

        issue_id = self.issue_id

        organization_id = self.organization_id

        repository_id = self.repository_id

        state = self.state

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "amount": amount,
                "backer_user_id": backer_user_id,
                "created_at": created_at,
                "email": email,
                "id": id,
                "issue_id": issue_id,
                "organization_id": organization_id,
                "repository_id": repository_id,
                "state": state,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.money import Money

        d = dict(src_dict)
        amount = Money.from_dict(d.pop("amount"))

        def _parse_backer_user_id(data: object) -> str | None:
            if data is None:
                return data
            return cast(None | str, data)

        backer_user_id = _parse_backer_user_id(d.pop("backer_user_id"))

        def _parse_created_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                created_at_type_0 = datetime.datetime.fromisoformat(data)

                return created_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        created_at = _parse_created_at(d.pop("created_at"))

        def _parse_email(data: object) -> str | None:
            if data is None:
                return data
            return cast(None | str, data)

        email = _parse_email(d.pop("email"))

        id = d.pop("id")

        issue_id = d.pop("issue_id")

        organization_id = d.pop("organization_id")

        repository_id = d.pop("repository_id")

        state = d.pop("state")

        reward_read = cls(
            amount=amount,
            backer_user_id=backer_user_id,
            created_at=created_at,
            email=email,
            id=id,
            issue_id=issue_id,
            organization_id=organization_id,
            repository_id=repository_id,
            state=state,
        )

        return reward_read
