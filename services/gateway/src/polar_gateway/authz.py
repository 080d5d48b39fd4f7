"""Authorization: a user reads and changes only what belongs to organizations they are a
member of. The organization service answers (CheckMembership); answers are reused for a few
seconds so a page of requests costs one check, not one per request.

Order of checks on a route: unknown resource -> 404 (from the service), known but the
caller is not a member -> 403. This tells a non-member that a name exists; the names are
GitHub's public account/repository names, so nothing is revealed that GitHub does not show.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from polar.organization.v1 import organization_service_pb2 as org_pb

from .clients import Clients
from .errors import ApiError


class NotAMember(ApiError):
    def __init__(self) -> None:
        super().__init__(403, "you are not a member of this organization")


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
