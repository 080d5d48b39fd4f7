"""Authorization: a user reads and changes only what belongs to organizations they are a
member of. The organization service answers (CheckMembership); answers are reused for a few
seconds so a page of requests costs one check, not one per request.

Order of checks on a route: unknown resource -> 404 (from the service), known but the
caller is not a member -> 403 — except repositories: a repository (found by name or id) of
an organization the caller is not a member of is the same 404 as a missing one, private or
public alike, so no one can probe which private repository names exist
(`visible_repository`). Organizations are addressed by opaque UUIDs: 403 tells nothing.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable

import grpc
import grpc.aio
from polar.organization.v1 import organization_service_pb2 as org_pb
from polar.repository.v1 import repository_pb2

from .clients import Clients
from .errors import ApiError


class NotAMember(ApiError):
    def __init__(self) -> None:
        super().__init__(403, "you are not a member of this organization")


class RepositoryNotFound(ApiError):
    def __init__(self) -> None:
        super().__init__(404, "repository not found", code="not_found")


class Memberships:
    def __init__(self, clients: Clients, *, ttl: float, size: int) -> None:
        self.clients = clients
        self.ttl = ttl
        self.size = size
        self._cache: OrderedDict[tuple[str, str], tuple[bool, float]] = OrderedDict()

    def _get(self, key: tuple[str, str]) -> bool | None:
        hit = self._cache.get(key)
        if hit is None:
            return None
        is_member, expires = hit
        if expires < time.monotonic():
            del self._cache[key]
            return None
        return is_member

    def remember(self, user_id: str, organization_id: str, is_member: bool) -> None:
        if self.ttl <= 0:
            return
        key = (user_id, organization_id)
        self._cache[key] = (is_member, time.monotonic() + self.ttl)
        self._cache.move_to_end(key)
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)

    def forget(self, user_id: str, organization_id: str) -> None:
        self._cache.pop((user_id, organization_id), None)

    def forget_organization(self, organization_id: str) -> None:
        for key in [k for k in self._cache if k[1] == organization_id]:
            del self._cache[key]

    async def is_member(self, user_id: str, organization_id: str) -> bool:
        """Raises AioRpcError NOT_FOUND (-> 404) for an unknown organization."""
        cached = self._get((user_id, organization_id))
        if cached is not None:
            return cached
        answer = await self.clients.call(
            self.clients.org.CheckMembership,
            org_pb.CheckMembershipRequest(user_id=user_id, organization_id=organization_id),
        )
        self.remember(user_id, organization_id, answer.is_member)
        return answer.is_member

    async def require(self, user_id: str, organization_id: str) -> None:
        if not await self.is_member(user_id, organization_id):
            raise NotAMember()

    async def visible_repository(
        self, user_id: str, found: Awaitable[repository_pb2.Repository]
    ) -> repository_pb2.Repository:
        """The repository if the user is a member of its organization; one identical 404
        for a missing one and for another organization's (see the module docstring)."""
        try:
            repository = await found
            if await self.is_member(user_id, repository.organization_id):
                return repository
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
        raise RepositoryNotFound()
