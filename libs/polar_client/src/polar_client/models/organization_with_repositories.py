from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from attrs import define as _attrs_define

from ..models.organization_with_repositories_status import OrganizationWithRepositoriesStatus

if TYPE_CHECKING:
    from ..models.organization_with_repositories_installation_permissions_type_0 import (
        OrganizationWithRepositoriesInstallationPermissionsType0,
    )
    from ..models.repository_read import RepositoryRead


T = TypeVar("T", bound="OrganizationWithRepositories")


@_attrs_define
class OrganizationWithRepositories:
    """
    Attributes:
        avatar_url (None | str):
        created_at (datetime.datetime | None):
        external_id (int):
        id (str):
        installation_created_at (datetime.datetime | None):
        installation_id (int | None):
        installation_permissions (None | OrganizationWithRepositoriesInstallationPermissionsType0):
        installation_suspended_at (datetime.datetime | None):
        installation_suspended_by (None | str):
        installation_updated_at (datetime.datetime | None):
        is_personal (bool):
        modified_at (datetime.datetime | None):
        name (str):
        platform (Literal['github']):
        repositories (list[RepositoryRead]):
        status (OrganizationWithRepositoriesStatus):
    """

    avatar_url: str | None
    created_at: datetime.datetime | None
    external_id: int
    id: str
    installation_created_at: datetime.datetime | None
    installation_id: int | None
    installation_permissions: OrganizationWithRepositoriesInstallationPermissionsType0 | None
    installation_suspended_at: datetime.datetime | None
    installation_suspended_by: str | None
    installation_updated_at: datetime.datetime | None
    is_personal: bool
    modified_at: datetime.datetime | None
    name: str
    platform: Literal["github"]
    repositories: list[RepositoryRead]
    status: OrganizationWithRepositoriesStatus

    def to_dict(self) -> dict[str, Any]:
        from ..models.organization_with_repositories_installation_permissions_type_0 import (
            OrganizationWithRepositoriesInstallationPermissionsType0,
        )

        avatar_url: str | None
        avatar_url = self.avatar_url

        created_at: str | None
        if isinstance(self.created_at, datetime.datetime):
            created_at = self.created_at.isoformat()
        else:
            created_at = self.created_at

        external_id = self.external_id

        id = self.id

        installation_created_at: str | None
        if isinstance(self.installation_created_at, datetime.datetime):
            installation_created_at = self.installation_created_at.isoformat()
        else:
            installation_created_at = self.installation_created_at

        installation_id: int | None
        installation_id = self.installation_id

        installation_permissions: dict[str, Any] | None
        if isinstance(
            self.installation_permissions, OrganizationWithRepositoriesInstallationPermissionsType0
        ):
            installation_permissions = self.installation_permissions.to_dict()
        else:
            installation_permissions = self.installation_permissions

        installation_suspended_at: str | None
        if isinstance(self.installation_suspended_at, datetime.datetime):
            installation_suspended_at = self.installation_suspended_at.isoformat()
        else:
            installation_suspended_at = self.installation_suspended_at

        installation_suspended_by: str | None
        installation_suspended_by = self.installation_suspended_by

        installation_updated_at: str | None
        if isinstance(self.installation_updated_at, datetime.datetime):
            installation_updated_at = self.installation_updated_at.isoformat()
        else:
            installation_updated_at = self.installation_updated_at

        is_personal = self.is_personal

        modified_at: str | None
        if isinstance(self.modified_at, datetime.datetime):
            modified_at = self.modified_at.isoformat()
        else:
            modified_at = self.modified_at

        name = self.name

        platform = self.platform

        repositories = []
        for repositories_item_data in self.repositories:
            repositories_item = repositories_item_data.to_dict()
            repositories.append(repositories_item)

        status = self.status.value

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "avatar_url": avatar_url,
                "created_at": created_at,
                "external_id": external_id,
                "id": id,
                "installation_created_at": installation_created_at,
                "installation_id": installation_id,
                "installation_permissions": installation_permissions,
                "installation_suspended_at": installation_suspended_at,
                "installation_suspended_by": installation_suspended_by,
                "installation_updated_at": installation_updated_at,
                "is_personal": is_personal,
                "modified_at": modified_at,
                "name": name,
                "platform": platform,
                "repositories": repositories,
                "status": status,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.organization_with_repositories_installation_permissions_type_0 import (
            OrganizationWithRepositoriesInstallationPermissionsType0,
        )
        from ..models.repository_read import RepositoryRead

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

        external_id = d.pop("external_id")

        id = d.pop("id")

        def _parse_installation_created_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                installation_created_at_type_0 = datetime.datetime.fromisoformat(data)

                return installation_created_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        installation_created_at = _parse_installation_created_at(d.pop("installation_created_at"))

        def _parse_installation_id(data: object) -> int | None:
            if data is None:
                return data
            return cast(int | None, data)

        installation_id = _parse_installation_id(d.pop("installation_id"))

        def _parse_installation_permissions(
            data: object,
        ) -> OrganizationWithRepositoriesInstallationPermissionsType0 | None:
            if data is None:
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                installation_permissions_type_0 = (
                    OrganizationWithRepositoriesInstallationPermissionsType0.from_dict(data)
                )

                return installation_permissions_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | OrganizationWithRepositoriesInstallationPermissionsType0, data)

        installation_permissions = _parse_installation_permissions(
            d.pop("installation_permissions")
        )

        def _parse_installation_suspended_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                installation_suspended_at_type_0 = datetime.datetime.fromisoformat(data)

                return installation_suspended_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        installation_suspended_at = _parse_installation_suspended_at(
            d.pop("installation_suspended_at")
        )

        def _parse_installation_suspended_by(data: object) -> str | None:
            if data is None:
                return data
            return cast(None | str, data)

        installation_suspended_by = _parse_installation_suspended_by(
            d.pop("installation_suspended_by")
        )

        def _parse_installation_updated_at(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                installation_updated_at_type_0 = datetime.datetime.fromisoformat(data)

                return installation_updated_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        installation_updated_at = _parse_installation_updated_at(d.pop("installation_updated_at"))

        is_personal = d.pop("is_personal")

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

        platform = cast(Literal["github"], d.pop("platform"))
        if platform != "github":
            raise ValueError(f"platform must match const 'github', got '{platform}'")

        repositories = []
        _repositories = d.pop("repositories")
        for repositories_item_data in _repositories:
            repositories_item = RepositoryRead.from_dict(repositories_item_data)

            repositories.append(repositories_item)

        status = OrganizationWithRepositoriesStatus(d.pop("status"))

        organization_with_repositories = cls(
            avatar_url=avatar_url,
            created_at=created_at,
            external_id=external_id,
            id=id,
            installation_created_at=installation_created_at,
            installation_id=installation_id,
            installation_permissions=installation_permissions,
            installation_suspended_at=installation_suspended_at,
            installation_suspended_by=installation_suspended_by,
            installation_updated_at=installation_updated_at,
            is_personal=is_personal,
            modified_at=modified_at,
            name=name,
            platform=platform,
            repositories=repositories,
            status=status,
        )

        return organization_with_repositories
