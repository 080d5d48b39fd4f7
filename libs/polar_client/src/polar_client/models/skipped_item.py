from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.skipped_item_kind import SkippedItemKind

T = TypeVar("T", bound="SkippedItem")


@_attrs_define
class SkippedItem:
    """
    Attributes:
        external_id (int | None): GitHub's id, when the item had one.
        kind (SkippedItemKind):
        number (int | None):
        reason (str):
    """

    external_id: int | None
    kind: SkippedItemKind
    number: int | None
    reason: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        external_id: int | None
        external_id = self.external_id

        kind = self.kind.value

        number: int | None
        number = self.number

        reason = self.reason

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "external_id": external_id,
                "kind": kind,
                "number": number,
                "reason": reason,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)

        def _parse_external_id(data: object) -> int | None:
            if data is None:
                return data
            return cast(int | None, data)

        external_id = _parse_external_id(d.pop("external_id"))

        kind = SkippedItemKind(d.pop("kind"))

        def _parse_number(data: object) -> int | None:
            if data is None:
                return data
            return cast(int | None, data)

        number = _parse_number(d.pop("number"))

        reason = d.pop("reason")

        skipped_item = cls(
            external_id=external_id,
            kind=kind,
            number=number,
            reason=reason,
        )

        skipped_item.additional_properties = d
        return skipped_item

    @property
    def additional_keys(self) -> list[str]:
        return list(self.additional_properties.keys())

    def __getitem__(self, key: str) -> Any:
        return self.additional_properties[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.additional_properties[key] = value

    def __delitem__(self, key: str) -> None:
        del self.additional_properties[key]

    def __contains__(self, key: str) -> bool:
        return key in self.additional_properties
