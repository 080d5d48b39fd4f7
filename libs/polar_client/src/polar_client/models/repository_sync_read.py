from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast
from uuid import UUID

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.repository_sync_read_failure_reason_type_0 import RepositorySyncReadFailureReasonType0
from ..models.repository_sync_read_status import RepositorySyncReadStatus

if TYPE_CHECKING:
    from ..models.skipped_item import SkippedItem


T = TypeVar("T", bound="RepositorySyncRead")


@_attrs_define
class RepositorySyncRead:
    """
    Attributes:
        attempts (int):
        expected (int): An estimate that never decreases during a sync.
        failure_message (None | str):
        failure_reason (None | RepositorySyncReadFailureReasonType0):
        job_id (None | UUID): The current or last sync, as in its events.
        last_success_at (datetime.datetime | None):
        next_run_at (datetime.datetime | None): Queued for, or the next retry.
        page (int): Pages stored so far.
        pages (int): Of an estimate (0: not known yet).
        repository_id (UUID):
        skipped (int):
        skipped_items (list[SkippedItem]):
        status (RepositorySyncReadStatus):
        synced (int):
    """

    attempts: int
    expected: int
    failure_message: str | None
    failure_reason: RepositorySyncReadFailureReasonType0 | None
    job_id: UUID | None
    last_success_at: datetime.datetime | None
    next_run_at: datetime.datetime | None
    page: int
    pages: int
    repository_id: UUID
    skipped: int
    skipped_items: list[SkippedItem]
    status: RepositorySyncReadStatus
    synced: int
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        attempts = self.attempts

        expected = self.expected

        failure_message: str | None
        failure_message = self.failure_message

        failure_reason: str | None
        if isinstance(self.failure_reason, RepositorySyncReadFailureReasonType0):
            failure_reason = self.failure_reason.value
        else:
            failure_reason = self.failure_reason

        job_id: str | None
        if isinstance(self.job_id, UUID):
            job_id = str(self.job_id)
        else:
            job_id = self.job_id

        last_success_at: str | None
        if isinstance(self.last_success_at, datetime.datetime):
            last_success_at = self.last_success_at.isoformat()
        else:
            last_success_at = self.last_success_at

        next_run_at: str | None
        if isinstance(self.next_run_at, datetime.datetime):
            next_run_at = self.next_run_at.isoformat()
        else:
            next_run_at = self.next_run_at

        page = self.page

        pages = self.pages

        repository_id = str(self.repository_id)

        skipped = self.skipped

        skipped_items = []
        for skipped_items_item_data in self.skipped_items:
            skipped_items_item = skipped_items_item_data.to_dict()
            skipped_items.append(skipped_items_item)

        status = self.status.value

        synced = self.synced

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "attempts": attempts,
                "expected": expected,
                "failure_message": failure_message,
                "failure_reason": failure_reason,
                "job_id": job_id,
                "last_success_at": last_success_at,
                "next_run_at": next_run_at,
                "page": page,
                "pages": pages,
                "repository_id": repository_id,
                "skipped": skipped,
                "skipped_items": skipped_items,
                "status": status,
                "synced": synced,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.skipped_item import SkippedItem

        d = dict(src_dict)
        attempts = d.pop("attempts")

        expected = d.pop("expected")

        def _parse_failure_message(data: object) -> str | None:
            if data is None:
                return data
            return cast(None | str, data)

        failure_message = _parse_failure_message(d.pop("failure_message"))

        def _parse_failure_reason(data: object) -> RepositorySyncReadFailureReasonType0 | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                failure_reason_type_0 = RepositorySyncReadFailureReasonType0(data)

                return failure_reason_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | RepositorySyncReadFailureReasonType0, data)

        failure_reason = _parse_failure_reason(d.pop("failure_reason"))

        def _parse_job_id(data: object) -> UUID | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                job_id_type_0 = UUID(data)

                return job_id_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | UUID, data)

        job_id = _parse_job_id(d.pop("job_id"))

        def _parse_last_success_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                last_success_at_type_0 = datetime.datetime.fromisoformat(data)

                return last_success_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        last_success_at = _parse_last_success_at(d.pop("last_success_at"))

        def _parse_next_run_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                next_run_at_type_0 = datetime.datetime.fromisoformat(data)

                return next_run_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        next_run_at = _parse_next_run_at(d.pop("next_run_at"))

        page = d.pop("page")

        pages = d.pop("pages")

        repository_id = UUID(d.pop("repository_id"))

        skipped = d.pop("skipped")

        skipped_items = []
        _skipped_items = d.pop("skipped_items")
        for skipped_items_item_data in _skipped_items:
            skipped_items_item = SkippedItem.from_dict(skipped_items_item_data)

            skipped_items.append(skipped_items_item)

        status = RepositorySyncReadStatus(d.pop("status"))

        synced = d.pop("synced")

        repository_sync_read = cls(
            attempts=attempts,
            expected=expected,
            failure_message=failure_message,
            failure_reason=failure_reason,
            job_id=job_id,
            last_success_at=last_success_at,
            next_run_at=next_run_at,
            page=page,
            pages=pages,
            repository_id=repository_id,
            skipped=skipped,
            skipped_items=skipped_items,
            status=status,
            synced=synced,
        )

        repository_sync_read.additional_properties = d
        return repository_sync_read

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
