from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

T = TypeVar("T", bound="Label")


@_attrs_define
class Label:
    """
    Attributes:
        color (str):
        id (int):
        name (str):
    """

    color: str
    id: int
    name: str

    def to_dict(self) -> dict[str, Any]:
        color = self.color

        id = self.id

        name = self.name

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "color": color,
                "id": id,
                "name": name,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        color = d.pop("color")

        id = d.pop("id")

        name = d.pop("name")

        label = cls(
            color=color,
            id=id,
            name=name,
        )

        return label
