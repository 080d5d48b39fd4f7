"""GitHub, the one outside party: installation payloads and the user-installations API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import httpx
from polar_kit.errors import DomainError, FailedPrecondition


class GitHubUnavailable(DomainError):
    code = grpc.StatusCode.UNAVAILABLE


class InvalidPayload(ValueError):
    """A webhook payload that lacks what we need: retrying will never help."""


@dataclass(frozen=True, slots=True)
class Installation:
    id: int
    account_id: int
    account_login: str
    account_avatar_url: str | None
    is_personal: bool
    created_at: datetime | None
    updated_at: datetime | None
    suspended_at: datetime | None
    suspended_by: str | None
    permissions: dict[str, Any]


def parse_time(value: object) -> datetime | None:
    """GitHub sends installation times as epoch seconds in some payloads, ISO 8601 in others."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise InvalidPayload(f"not a timestamp: {value!r}")


def parse_installation(data: Mapping[str, Any]) -> Installation:
    try:
        account = data["account"]
        suspended_by = data.get("suspended_by") or {}
        return Installation(
            id=int(data["id"]),
            account_id=int(account["id"]),
            account_login=str(account["login"]),
            account_avatar_url=account.get("avatar_url"),
            is_personal=str(data.get("target_type", account.get("type", ""))).lower() == "user",
            created_at=parse_time(data.get("created_at")),
            updated_at=parse_time(data.get("updated_at")),
            suspended_at=parse_time(data.get("suspended_at")),
            suspended_by=suspended_by.get("login"),
            permissions=dict(data.get("permissions") or {}),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidPayload(f"malformed installation: {e!r}") from e


class GitHubClient:
    """The GitHub REST API as the signed-in user sees it; the base URL is configuration."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url
        self.timeout = timeout

    async def user_installations(self, token: str) -> AsyncIterator[Installation]:
        # Imported on first use: githubkit costs ~15 MB of memory, and only InstallOrganization
        # needs it, so an idle service stays small.
        from githubkit import GitHub
        from githubkit.exception import RequestError, RequestFailed

        async with GitHub(token, base_url=self.base_url, timeout=self.timeout) as gh:
            page = 1
            while True:
                try:
                    response = await gh.arequest(
                        "GET", "/user/installations", params={"per_page": 100, "page": page}
                    )
                except RequestFailed as e:
                    if e.response.status_code in (401, 403):
                        raise FailedPrecondition(
                            "GitHub rejected the user's token; sign in with GitHub again"
                        ) from e
                    raise GitHubUnavailable(f"GitHub answered {e.response.status_code}") from e
                # githubkit wraps transport failures (refused, reset, timeout) in RequestError.
                except (RequestError, httpx.HTTPError) as e:
                    raise GitHubUnavailable(f"GitHub is unreachable: {e!r}") from e
                installations = response.json().get("installations") or []
                for item in installations:
                    yield parse_installation(item)
                if len(installations) < 100:
                    return
                page += 1

    async def find_user_installation(self, token: str, installation_id: int) -> Installation | None:
        async for installation in self.user_installations(token):
            if installation.id == installation_id:
                return installation
        return None
