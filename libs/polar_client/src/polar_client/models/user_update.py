from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

T = TypeVar("T", bound="UserUpdate")


@_attrs_define
class UserUpdate:
    """Nothing about a user can be changed through the API yet: username, email and avatar
    come from GitHub at sign-in, and the organization service has no UpdateUser RPC. An
    empty body is accepted (returns the user); any field is refused with 422.

    """

    def to_dict(self) -> dict[str, Any]:

        field_dict: dict[str, Any] = {}

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        user_update = cls()

        return user_update
