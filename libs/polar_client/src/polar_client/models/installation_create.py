from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeVar, cast

from attrs import define as _attrs_define

T = TypeVar("T", bound="InstallationCreate")


@_attrs_define
class InstallationCreate:
    """
    Attributes:
        external_id (int): The GitHub App installation id.
        platform (Literal['github']):
    """

    external_id: int
    platform: Literal["github"]

    def to_dict(self) -> dict[str, Any]:
        external_id = self.external_id

        platform = self.platform

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "external_id": external_id,
                "platform": platform,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        external_id = d.pop("external_id")

        platform = cast(Literal["github"], d.pop("platform"))
        if platform != "github":
            raise ValueError(f"platform must match const 'github', got '{platform}'")

        installation_create = cls(
            external_id=external_id,
            platform=platform,
        )

        return installation_create
