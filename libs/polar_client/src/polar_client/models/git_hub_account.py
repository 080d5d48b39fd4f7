from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define

T = TypeVar("T", bound="GitHubAccount")


@_attrs_define
class GitHubAccount:
    """
    Attributes:
        avatar_url (None | str):
        id (int):
        login (str):
    """

    avatar_url: str | None
    id: int
    login: str

    def to_dict(self) -> dict[str, Any]:
        avatar_url: str | None
        avatar_url = self.avatar_url

        id = self.id

        login = self.login

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "avatar_url": avatar_url,
                "id": id,
                "login": login,
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

        id = d.pop("id")

        login = d.pop("login")

        git_hub_account = cls(
            avatar_url=avatar_url,
            id=id,
            login=login,
        )

        return git_hub_account
