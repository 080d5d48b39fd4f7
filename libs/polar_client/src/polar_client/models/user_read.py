from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define

T = TypeVar("T", bound="UserRead")


@_attrs_define
class UserRead:
    """
    Attributes:
        avatar_url (None | str):
        created_at (datetime.datetime | None):
        email (None | str):
        email_verified (bool):
        id (str):
        modified_at (datetime.datetime | None):
        username (str):
    """

    avatar_url: str | None
    created_at: datetime.datetime | None
    email: str | None
    email_verified: bool
    id: str
    modified_at: datetime.datetime | None
    username: str

    def to_dict(self) -> dict[str, Any]:
        avatar_url: str | None
        avatar_url = self.avatar_url

        created_at: str | None
        if isinstance(self.created_at, datetime.datetime):
            created_at = self.created_at.isoformat()
        else:
            created_at = self.created_at

        email: str | None
        email = self.email

        email_verified = self.email_verified

        id = self.id

        modified_at: str | None
        if isinstance(self.modified_at, datetime.datetime):
            modified_at = self.modified_at.isoformat()
        else:
            modified_at = self.modified_at

        username = self.username

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "avatar_url": avatar_url,
                "created_at": created_at,
                "email": email,
                "email_verified": email_verified,
                "id": id,
                "modified_at": modified_at,
                "username": username,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)

        def _parse_avatar_url(data: object) -> str | None:
            if data is None:
                return data
            return cast(None | str, data)

        avatar_url = _parse_avatar_url(d.pop("avatar_url"))

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

        email_verified = d.pop("email_verified")

        id = d.pop("id")

        def _parse_modified_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                modified_at_type_0 = datetime.datetime.fromisoformat(data)

                return modified_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        modified_at = _parse_modified_at(d.pop("modified_at"))

        username = d.pop("username")

        user_read = cls(
            avatar_url=avatar_url,
            created_at=created_at,
            email=email,
            email_verified=email_verified,
            id=id,
            modified_at=modified_at,
            username=username,
        )

        return user_read
