"""The read model behind GET /user/organizations: each user's organizations with their
repositories, kept by the gateway from the domain events it already receives.

A user's answer (v2's page, v1's list) is built once from the services (ListOrganizations,
ListRepositories), encoded once with its ETag, and served from memory until an event changes
it: the user's `member_added` / `member_removed`, any event of one of their organizations
(created, updated, suspended, deleted...), or a repository event of one of them. The events
come through the live stream's feed (feed.py), which reads every event of the EVENTS stream in
order; nats-py's ordered consumer refills a gap itself, and when the feed is lost the model is
emptied and not used until the feed is back (it then refills from the services, request by
request). An answer built while a change of its user or organizations arrived is served but
not kept.

Authorization is the membership list of the user, exactly as the organization service gave
it, changed as soon as its event arrives; a user's answer never mixes in another's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from polar.organization.v1 import events_pb2 as organization_events
from polar.repository.v1 import events_pb2 as repository_events

from .events import Event

# Events that can change an organization's part of an answer (besides membership events).
_REPOSITORY_EVENTS = (
    repository_events.RepositoryCreated,
    repository_events.RepositoryUpdated,
    repository_events.RepositoryDeleted,
    repository_events.RepositorySyncCompleted,
)
_ORGANIZATION_EVENTS = (
    organization_events.OrganizationCreated,
    organization_events.OrganizationUpdated,
    organization_events.OrganizationSuspended,
    organization_events.OrganizationUnsuspended,
    organization_events.OrganizationDeleted,
)


_TYPES = frozenset(
    m.DESCRIPTOR.full_name
    for m in (
        organization_events.MemberAdded,
        organization_events.MemberRemoved,
        *_ORGANIZATION_EVENTS,
        *_REPOSITORY_EVENTS,
    )
)


@dataclass(frozen=True)
class Answer:
    body: bytes
    etag: str  # quoted, as in the header
    organizations: frozenset[str]


def etag(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


VERSIONS = ("v1", "v2")  # the answers kept per user: one per API version
Build = Callable[[], Awaitable[tuple[bytes, frozenset[str]]]]


class UserOrganizations:
    """Answers by (user, version), with what invalidates them."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.enabled = False  # only while the feed is up (see the module docstring)
        self._answers: dict[tuple[str, str], Answer] = {}
        self._by_organization: dict[str, set[tuple[str, str]]] = {}
        # When each user / organization last changed, on a clock of changes: an answer built
        # since an earlier tick than one of these is not kept.
        self._clock = 0
        self._user_changed: dict[str, int] = {}
        self._organization_changed: dict[str, int] = {}

    def cached(self, user_id: str, version: str) -> Answer | None:
        return self._answers.get((user_id, version)) if self.enabled else None

    async def get(self, user_id: str, version: str, build: Build) -> Answer:
        found = self.cached(user_id, version)
        if found is not None:
            return found
        enabled, started = self.enabled, self._clock
        body, organizations = await build()
        answer = Answer(body, etag(body), organizations)
        changed = self._user_changed.get(user_id, -1) >= started or any(
            self._organization_changed.get(o, -1) >= started for o in organizations
        )
        if enabled and self.enabled and not changed:
            self._keep((user_id, version), answer)
        return answer

    def _keep(self, key: tuple[str, str], answer: Answer) -> None:
        if len(self._answers) >= self.size:
            self.clear()  # rare (as many users as the size asked meanwhile): start over
        self._answers[key] = answer
        for organization_id in answer.organizations:
            self._by_organization.setdefault(organization_id, set()).add(key)

    def _drop(self, key: tuple[str, str]) -> None:
        answer = self._answers.pop(key, None)
        if answer is None:
            return
        for organization_id in answer.organizations:
            keys = self._by_organization.get(organization_id)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_organization[organization_id]

    def user_changed(self, user_id: str) -> None:
        self._user_changed[user_id] = self._clock
        self._clock += 1
        for version in VERSIONS:
            self._drop((user_id, version))

    def organization_changed(self, organization_id: str) -> None:
        self._organization_changed[organization_id] = self._clock
        self._clock += 1
        for key in list(self._by_organization.get(organization_id, ())):
            self._drop(key)

    def follows(self, headers: Mapping[str, str] | None) -> bool:
        """Whether an event of these headers (its `ce-type`) can change an answer."""
        return self.enabled and headers is not None and headers.get("ce-type") in _TYPES

    def apply(self, event: Event) -> None:
        """An event of the feed, in order."""
        message = event.message
        if isinstance(message, organization_events.MemberAdded):
            self.user_changed(message.member.user_id)
        elif isinstance(message, organization_events.MemberRemoved):
            self.user_changed(message.user_id)
        elif isinstance(message, (*_ORGANIZATION_EVENTS, *_REPOSITORY_EVENTS)):
            for organization_id in event.scope.organizations:
                self.organization_changed(organization_id)

    def clear(self) -> None:
        self._answers.clear()
        self._by_organization.clear()

    def start(self) -> None:
        self.enabled = True

    def stop(self) -> None:
        """The feed is lost: events may be missed from now on."""
        self.enabled = False
        self.clear()
