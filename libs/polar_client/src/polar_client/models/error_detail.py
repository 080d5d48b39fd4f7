from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define

from ..types import UNSET, Unset

T = TypeVar("T", bound="ErrorDetail")


@_attrs_define
class ErrorDetail:
    """One invalid field: found by the gateway (a pydantic error type) or by the service
    behind it (`type` field_violation, `field` the request field's dotted path).

        Attributes:
            location (list[str]): Where the value was, e.g. ["body", "amount"].
            message (str):
            type_ (str): missing, string_too_long, ... or field_violation.
            field (None | str | Unset): The service's field path, e.g. amount.minor_units.
    """

    location: list[str]
    message: str
    type_: str
    field: str | Unset | None = UNSET

    def to_dict(self) -> dict[str, Any]:
        location = self.location

        message = self.message

        type_ = self.type_

        field: str | Unset | None
        if isinstance(self.field, Unset):
            field = UNSET
        else:
            field = self.field

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "location": location,
                "message": message,
                "type": type_,
            }
        )
        if field is not UNSET:
            field_dict["field"] = field

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        location = cast(list[str], d.pop("location"))

        message = d.pop("message")

        type_ = d.pop("type")

        def _parse_field(data: object) -> str | Unset | None:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        field = _parse_field(d.pop("field", UNSET))

        error_detail = cls(
            location=location,
            message=message,
            type_=type_,
            field=field,
        )

        return error_detail
