from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.error_detail import ErrorDetail
    from ..models.error_resource import ErrorResource


T = TypeVar("T", bound="Error")


@_attrs_define
class Error:
    """
    Attributes:
        code (str): Stable snake_case error code, e.g. not_found.
        message (str):
        details (list[ErrorDetail] | None | Unset): The invalid fields, one entry each (422).
        domain (None | str | Unset): Who gave the reason, e.g. polar.repository.v1.
        reason (None | str | Unset): Stable UPPER_SNAKE_CASE reason given by the service (google.rpc.ErrorInfo), finer
            than `code`: e.g. ISSUE_NOT_FOUND, ORGANIZATION_SUSPENDED, INVALID_ARGUMENT.
        request_id (None | str | Unset):
        resource (ErrorResource | None | Unset): What was not found (404 from a service).
        retry_after_seconds (float | None | Unset): When to try again (503; also the Retry-After header).
    """

    code: str
    message: str
    details: list[ErrorDetail] | Unset | None = UNSET
    domain: str | Unset | None = UNSET
    reason: str | Unset | None = UNSET
    request_id: str | Unset | None = UNSET
    resource: ErrorResource | Unset | None = UNSET
    retry_after_seconds: float | Unset | None = UNSET

    def to_dict(self) -> dict[str, Any]:
        from ..models.error_resource import ErrorResource

        code = self.code

        message = self.message

        details: list[dict[str, Any]] | Unset | None
        if isinstance(self.details, Unset):
            details = UNSET
        elif isinstance(self.details, list):
            details = []
            for details_type_0_item_data in self.details:
                details_type_0_item = details_type_0_item_data.to_dict()
                details.append(details_type_0_item)

        else:
            details = self.details

        domain: str | Unset | None
        if isinstance(self.domain, Unset):
            domain = UNSET
        else:
            domain = self.domain

        reason: str | Unset | None
        if isinstance(self.reason, Unset):
            reason = UNSET
        else:
            reason = self.reason

        request_id: str | Unset | None
        if isinstance(self.request_id, Unset):
            request_id = UNSET
        else:
            request_id = self.request_id

        resource: dict[str, Any] | Unset | None
        if isinstance(self.resource, Unset):
            resource = UNSET
        elif isinstance(self.resource, ErrorResource):
            resource = self.resource.to_dict()
        else:
            resource = self.resource

        retry_after_seconds: float | Unset | None
        if isinstance(self.retry_after_seconds, Unset):
            retry_after_seconds = UNSET
        else:
            retry_after_seconds = self.retry_after_seconds

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "code": code,
                "message": message,
            }
        )
        if details is not UNSET:
            field_dict["details"] = details
        if domain is not UNSET:
            field_dict["domain"] = domain
        if reason is not UNSET:
            field_dict["reason"] = reason
        if request_id is not UNSET:
            field_dict["request_id"] = request_id
        if resource is not UNSET:
            field_dict["resource"] = resource
        if retry_after_seconds is not UNSET:
            field_dict["retry_after_seconds"] = retry_after_seconds

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.error_detail import ErrorDetail
        from ..models.error_resource import ErrorResource

        d = dict(src_dict)
        code = d.pop("code")

        message = d.pop("message")

        def _parse_details(data: object) -> list[ErrorDetail] | Unset | None:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, list):
                    raise TypeError()
                details_type_0 = []
                _details_type_0 = data
                for details_type_0_item_data in _details_type_0:
                    details_type_0_item = ErrorDetail.from_dict(details_type_0_item_data)

                    details_type_0.append(details_type_0_item)

                return details_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(list[ErrorDetail] | None | Unset, data)

        details = _parse_details(d.pop("details", UNSET))

        def _parse_domain(data: object) -> str | Unset | None:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        domain = _parse_domain(d.pop("domain", UNSET))

        def _parse_reason(data: object) -> str | Unset | None:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        reason = _parse_reason(d.pop("reason", UNSET))

        def _parse_request_id(data: object) -> str | Unset | None:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        request_id = _parse_request_id(d.pop("request_id", UNSET))

        def _parse_resource(data: object) -> ErrorResource | Unset | None:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                resource_type_0 = ErrorResource.from_dict(data)

                return resource_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(ErrorResource | None | Unset, data)

        resource = _parse_resource(d.pop("resource", UNSET))

        def _parse_retry_after_seconds(data: object) -> float | Unset | None:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(float | None | Unset, data)

        retry_after_seconds = _parse_retry_after_seconds(d.pop("retry_after_seconds", UNSET))

        error = cls(
            code=code,
            message=message,
            details=details,
            domain=domain,
            reason=reason,
            request_id=request_id,
            resource=resource,
            retry_after_seconds=retry_after_seconds,
        )

        return error
