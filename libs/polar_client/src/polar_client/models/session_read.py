from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

T = TypeVar("T", bound="SessionRead")


@_attrs_define
class SessionRead:
    """
    Attributes:
        current (bool):
        expires_at (datetime.datetime):
        id (str):
        last_seen_at (datetime.datetime):
        signed_in_at (datetime.datetime):
        user_agent (str):
    """

    current: bool
    expires_at: datetime.datetime
    id: str
    last_seen_at: datetime.datetime
    signed_in_at: datetime.datetime
    user_agent: str

    def to_dict(self) -> dict[str, Any]:
        current = self.current

        expires_at = self.expires_at.isoformat()

        id = self.id

        last_seen_at = self.last_seen_at.isoformat()

        signed_in_at = self.signed_in_at.isoformat()

        user_agent = self.user_agent

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "current": current,
                "expires_at": expires_at,
                "id": id,
                "last_seen_at": last_seen_at,
                "signed_in_at": signed_in_at,
                "user_agent": user_agent,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        current = d.pop("current")

        expires_at = datetime.datetime.fromisoformat(d.pop("expires_at"))

        id = d.pop("id")

        last_seen_at = datetime.datetime.fromisoformat(d.pop("last_seen_at"))

        signed_in_at = datetime.datetime.fromisoformat(d.pop("signed_in_at"))

        user_agent = d.pop("user_agent")

        session_read = cls(
            current=current,
            expires_at=expires_at,
            id=id,
            last_seen_at=last_seen_at,
            signed_in_at=signed_in_at,
            user_agent=user_agent,
        )

        return session_read
