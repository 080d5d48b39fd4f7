"""Domain events as the live stream sees them: decoded, and scoped to the channels they belong to.

An event's type is its `ce-type` header (the protobuf message's full name). Its channels are
read from the payload: the organization, repository and user ids it concerns. An event the
gateway cannot decode has no known channel and is never sent to anyone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError, Message
from polar.organization.v1 import events_pb2 as organization_events
from polar.organization.v1 import organization_pb2
from polar.repository.v1 import events_pb2 as repository_events
from polar.repository.v1 import repository_pb2
from polar.reward.v1 import events_pb2 as reward_events


def _registry(*modules: ModuleType) -> dict[str, type[Message]]:
    types: dict[str, type[Message]] = {}
    for module in modules:
        for name, descriptor in module.DESCRIPTOR.message_types_by_name.items():
            types[descriptor.full_name] = getattr(module, name)
    return types


EVENT_TYPES: Mapping[str, type[Message]] = _registry(
    organization_events, repository_events, reward_events
)


@dataclass
class Scope:
    organizations: set[str] = field(default_factory=set)
    repositories: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)


def _collect(message: Message, scope: Scope) -> None:
    """Ids by the shape of the messages of our contracts: a resource message names itself
    by `id`; any message may carry organization_id / repository_id / user_id fields."""
    if isinstance(message, organization_pb2.Organization):
        scope.organizations.add(message.id)
    elif isinstance(message, organization_pb2.User):
        scope.users.add(message.id)
    elif isinstance(message, repository_pb2.Repository):
        scope.repositories.add(message.id)
    for descriptor, value in message.ListFields():
        if descriptor.message_type is not None:
            if not descriptor.is_repeated:
                _collect(value, scope)
        elif descriptor.name == "organization_id":
            scope.organizations.add(value)
        elif descriptor.name == "repository_id":
            scope.repositories.add(value)
        elif descriptor.name in ("user_id", "backer_user_id"):
            scope.users.add(value)
    scope.organizations.discard("")
    scope.repositories.discard("")
    scope.users.discard("")


@dataclass(frozen=True)
class Event:
    sequence: int  # the JetStream stream sequence: the SSE id, resumable
    subject: str  # logical subject, e.g. polar.repository.v1.issue_created
    type: str
    message: Message
    scope: Scope
    headers: Mapping[str, str]
    # Encodings by format, made once per event however many streams send it.
    encoded: dict[str, bytes | None] = field(default_factory=dict, compare=False)

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.headers.get("ce-id"),
                "type": self.type,
                "subject": self.subject,
                "time": self.headers.get("ce-time"),
                "data": MessageToDict(self.message, preserving_proto_field_name=True),
            },
            separators=(",", ":"),
        )


def decode(
    sequence: int, subject: str, data: bytes, headers: Mapping[str, str] | None
) -> Event | None:
    headers = headers or {}
    type_name = headers.get("ce-type", "")
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        return None
    message = cls()
    try:
        message.ParseFromString(data)
    except DecodeError:
        return None
    scope = Scope()
    _collect(message, scope)
    return Event(sequence, subject, type_name, message, scope, headers)


@dataclass(slots=True)  # one per open stream
class Channels:
    """What one stream client may receive; kept current as its memberships change."""

    user_id: str
    organizations: set[str]
    repositories: set[str] = field(default_factory=set)
    include_user: bool = True
    # Set for a single-organization or single-repository stream: it ends when that
    # organization is no longer the user's.
    pinned_organization: str | None = None
    # Organization -> stream sequence of the user's latest MemberAdded in the replayed span:
    # nothing of that organization from before it is sent (no history from before joining).
    joined: dict[str, int] = field(default_factory=dict)

    def _since_joining(self, organization_id: str | None, event: Event) -> bool:
        return event.sequence > self.joined.get(organization_id or "", 0)

    def admits(self, event: Event) -> bool:
        scope = event.scope
        if self.repositories:
            return bool(scope.repositories & self.repositories) and self._since_joining(
                self.pinned_organization, event
            )
        for organization_id in scope.organizations & self.organizations:
            if self._since_joining(organization_id, event):
                return True
        return self.include_user and self.user_id in scope.users

    def process(self, event: Event) -> tuple[bool, bool]:
        """(send it, keep the stream open). Membership changes of this user are applied, and
        the event that announces one is sent whether it opens or closes a channel."""
        before = self.admits(event)
        keep_open = self._follow(event.message)
        return before or self.admits(event), keep_open

    def _follow(self, message: Message) -> bool:
        if isinstance(message, organization_events.MemberAdded):
            if message.member.user_id == self.user_id and self.pinned_organization is None:
                self.organizations.add(message.member.organization_id)
        elif isinstance(message, organization_events.MemberRemoved):
            if message.user_id == self.user_id:
                return self.lose(message.organization_id)
        elif isinstance(message, organization_events.OrganizationDeleted):
            return self.lose(message.organization_id)
        return True

    def lose(self, organization_id: str) -> bool:
        """The organization is no longer the user's; False when the stream must end."""
        self.organizations.discard(organization_id)
        return organization_id != self.pinned_organization
