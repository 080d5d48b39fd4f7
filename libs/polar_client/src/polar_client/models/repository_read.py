from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, cast

from attrs import define as _attrs_define

T = TypeVar("T", bound="RepositoryRead")


@_attrs_define
class RepositoryRead:
    """
    Attributes:
        created_at (datetime.datetime | None):
        description (None | str):
        external_id (int):
        forks (int):
        homepage (None | str):
        id (str):
        is_archived (bool):
        is_fork (bool):
        is_private (bool):
        license_ (None | str):
        main_branch (None | str):
        modified_at (datetime.datetime | None):
        name (str):
        open_issues (int):
        organization_id (str):
        platform (Literal['github']):
        repository_created_at (datetime.datetime | None):
        repository_modified_at (datetime.datetime | None):
        repository_pushed_at (datetime.datetime | None):
        stars (int):
        topics (list[str]):
        watchers (int):
    """

    created_at: datetime.datetime | None
    description: str | None
    external_id: int
    forks: int
    homepage: str | None
    id: str
    is_archived: bool
    is_fork: bool
    is_private: bool
    license_: str | None
    main_branch: str | None
    modified_at: datetime.datetime | None
    name: str
    open_issues: int
    organization_id: str
    platform: Literal["github"]
    repository_created_at: datetime.datetime | None
    repository_modified_at: datetime.datetime | None
    repository_pushed_at: datetime.datetime | None
    stars: int
    topics: list[str]
    watchers: int

    def to_dict(self) -> dict[str, Any]:
        created_at: str | None
        if isinstance(self.created_at, datetime.datetime):
            created_at = self.created_at.isoformat()
        else:
            created_at = self.created_at

        description: str | None
        description = self.description

        external_id = self.external_id

        forks = self.forks

        homepage: str | None
        homepage = self.homepage

        id = self.id

        is_archived = self.is_archived

        is_fork = self.is_fork

        is_private = self.is_private

        license_: str | None
        license_ = self.license_

        main_branch: str | None
        main_branch = self.main_branch

        modified_at: str | None
        if isinstance(self.modified_at, datetime.datetime):
            modified_at = self.modified_at.isoformat()
        else:
            modified_at = self.modified_at

        name = self.name

        open_issues = self.open_issues

        organization_id = self.organization_id

        platform = self.platform

        repository_created_at: str | None
        if isinstance(self.repository_created_at, datetime.datetime):
            repository_created_at = self.repository_created_at.isoformat()
        else:
            repository_created_at = self.repository_created_at

        repository_modified_at: str | None
        if isinstance(self.repository_modified_at, datetime.datetime):
            repository_modified_at = self.repository_modified_at.isoformat()
        else:
            repository_modified_at = self.repository_modified_at

        repository_pushed_at: str | None
        if isinstance(self.repository_pushed_at, datetime.datetime):
            repository_pushed_at = self.repository_pushed_at.isoformat()
        else:
            repository_pushed_at = self.repository_pushed_at

        stars = self.stars

        topics = self.topics

        watchers = self.watchers

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "created_at": created_at,
                "description": description,
                "external_id": external_id,
                "forks": forks,
                "homepage": homepage,
                "id": id,
                "is_archived": is_archived,
                "is_fork": is_fork,
                "is_private": is_private,
                "license": license_,
                "main_branch": main_branch,
                "modified_at": modified_at,
                "name": name,
                "open_issues": open_issues,
                "organization_id": organization_id,
                "platform": platform,
                "repository_created_at": repository_created_at,
                "repository_modified_at": repository_modified_at,
                "repository_pushed_at": repository_pushed_at,
                "stars": stars,
                "topics": topics,
                "watchers": watchers,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)

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

        def _parse_description(data: object) -> str | None:
            if data is None:
                return data
            return cast(None | str, data)

        description = _parse_description(d.pop("description"))

        external_id = d.pop("external_id")

        forks = d.pop("forks")

        def _parse_homepage(data: object) -> str | None:
            if data is None:
                return data
            return cast(None | str, data)

        homepage = _parse_homepage(d.pop("homepage"))

        id = d.pop("id")

        is_archived = d.pop("is_archived")

        is_fork = d.pop("is_fork")

        is_private = d.pop("is_private")

        def _parse_license_(data: object) -> str | None:
            if data is None:
                return data
            return cast(None | str, data)

        license_ = _parse_license_(d.pop("license"))

        def _parse_main_branch(data: object) -> str | None:
            if data is None:
                return data
            return cast(None | str, data)

        main_branch = _parse_main_branch(d.pop("main_branch"))

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

        name = d.pop("name")

        open_issues = d.pop("open_issues")

        organization_id = d.pop("organization_id")

        platform = cast(Literal["github"], d.pop("platform"))
        if platform != "github":
            raise ValueError(f"platform must match const 'github', got '{platform}'")

        def _parse_repository_created_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                repository_created_at_type_0 = datetime.datetime.fromisoformat(data)

                return repository_created_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        repository_created_at = _parse_repository_created_at(d.pop("repository_created_at"))

        def _parse_repository_modified_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                repository_modified_at_type_0 = datetime.datetime.fromisoformat(data)

                return repository_modified_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        repository_modified_at = _parse_repository_modified_at(d.pop("repository_modified_at"))

        def _parse_repository_pushed_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                repository_pushed_at_type_0 = datetime.datetime.fromisoformat(data)

                return repository_pushed_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        repository_pushed_at = _parse_repository_pushed_at(d.pop("repository_pushed_at"))

        stars = d.pop("stars")

        topics = cast(list[str], d.pop("topics"))

        watchers = d.pop("watchers")

        repository_read = cls(
            created_at=created_at,
            description=description,
            external_id=external_id,
            forks=forks,
            homepage=homepage,
            id=id,
            is_archived=is_archived,
            is_fork=is_fork,
            is_private=is_private,
            license_=license_,
            main_branch=main_branch,
            modified_at=modified_at,
            name=name,
            open_issues=open_issues,
            organization_id=organization_id,
            platform=platform,
            repository_created_at=repository_created_at,
            repository_modified_at=repository_modified_at,
            repository_pushed_at=repository_pushed_at,
            stars=stars,
            topics=topics,
            watchers=watchers,
        )

        return repository_read
