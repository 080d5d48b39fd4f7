"""Protobuf messages of the services -> /api/v1's JSON objects (the monolith's contract).

The same service calls feed `mappers` (v2); only the shapes differ. What the contract
requires is never null: a value the services may lack gets the monolith's meaning (an
organization without installation time shows its creation time, a user without an email
GitHub's no-reply address). GitHub's own objects (milestone, reactions, refs) come back as
the payloads carried them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Struct
from polar.common.v1 import common_pb2
from polar.organization.v1 import organization_pb2
from polar.repository.v1 import events_pb2 as repository_events
from polar.repository.v1 import repository_pb2
from polar.reward.v1 import reward_pb2

from . import schemas_v1
from .events import Event
from .mappers import _EPOCH, _ISSUE_STATE, _ORG_STATUS, PLATFORM, _time

JSON = dict[str, Any]

# Rewards in states the v1 enum has no word for (refunded, cancelled) are not shown to v1.
V1_REWARD_STATES = frozenset(("created", "pending", "paid"))
USD = "USD"


def _required_time(message: Message, *fields: str) -> datetime:
    for field in fields:
        value = _time(message, field)
        if value is not None:
            return value
    return _time(message, "created_at") or _EPOCH


def _whole(value: Any) -> Any:
    # A Struct keeps every number as a double: GitHub's ids and counts are integers.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value


def _object(message: Message, field: str) -> JSON | None:
    if not message.HasField(field):
        return None
    value: Struct = getattr(message, field)
    result: JSON = _whole(MessageToDict(value))
    return result


def _account(message: Message, field: str) -> JSON | None:
    return _user(getattr(message, field)) if message.HasField(field) else None


def _user(m: common_pb2.GitHubAccount) -> JSON:
    return {"id": m.id, "login": m.login, "avatar_url": m.avatar_url or None}


def _optional(message: Message, field: str) -> Any:
    return getattr(message, field) if message.HasField(field) else None


def user(m: organization_pb2.User) -> JSON:
    return {
        # GitHub's profile as of the last sign-in; login and avatar as Polar keeps them.
        "profile": {"name": None}
        | (_object(m, "profile") or {})
        | {"login": m.username, "avatar_url": m.avatar_url or None},
        "id": m.id,
        # The contract requires an email; GitHub gives every account a no-reply address.
        "email": m.email or f"{m.username}@users.noreply.github.com",
        "is_active": True,
        "is_superuser": m.is_superuser,
        "is_verified": m.email_verified,
    }


def repository(m: repository_pb2.Repository) -> JSON:
    return {
        "platform": PLATFORM,
        "external_id": m.external_id,
        "organization_id": m.organization_id,
        "name": m.name,
        "description": m.description or None,
        "open_issues": m.open_issues,
        "forks": m.forks,
        "stars": m.stars,
        "watchers": m.watchers,
        "main_branch": m.main_branch or None,
        "topics": list(m.topics),
        "license": m.license or None,
        "repository_pushed_at": _time(m, "repository_pushed_at"),
        "repository_created_at": _time(m, "repository_created_at"),
        "repository_modified_at": _time(m, "repository_modified_at"),
        "is_private": m.is_private,
        "is_fork": m.is_fork,
        "is_issues_enabled": _optional(m, "is_issues_enabled"),
        "is_projects_enabled": _optional(m, "is_projects_enabled"),
        "is_wiki_enabled": _optional(m, "is_wiki_enabled"),
        "is_pages_enabled": _optional(m, "is_pages_enabled"),
        "is_downloads_enabled": _optional(m, "is_downloads_enabled"),
        "is_archived": m.is_archived,
        "is_disabled": _optional(m, "is_disabled"),
        "id": m.id,
        "visibility": "private" if m.is_private else "public",
    }


def organization(m: organization_pb2.Organization, repositories: list[JSON] | None = None) -> JSON:
    return {
        "platform": PLATFORM,
        "name": m.name,
        "external_id": m.external_id,
        "avatar_url": m.avatar_url,
        "is_personal": m.is_personal,
        "is_site_admin": False,  # GitHub's site_admin: Polar never mirrored a staff account
        "installation_id": m.installation_id,
        "installation_created_at": _required_time(m, "installation_created_at"),
        "installation_updated_at": _time(m, "installation_updated_at"),
        "installation_suspended_at": _time(m, "installation_suspended_at"),
        "id": m.id,
        "status": _ORG_STATUS.get(m.status, "inactive"),
        "created_at": _required_time(m, "created_at"),
        "modified_at": _time(m, "modified_at"),
        "repositories": repositories,
    }


def _issue_fields(m: repository_pb2.Issue | repository_pb2.PullRequest) -> JSON:
    return {
        "platform": PLATFORM,
        "external_id": m.external_id,
        "organization_id": m.organization_id,
        "repository_id": m.repository_id,
        "number": m.number,
        "title": m.title,
        "body": m.body or None,
        "comments": m.comments,
        "author": _account(m, "author"),
        "author_association": m.author_association or None,
        "labels": [{"id": x.id, "name": x.name, "color": x.color} for x in m.labels],
        "assignee": _account(m, "assignee"),
        "assignees": [_user(a) for a in m.assignees],
        "milestone": _object(m, "milestone_object"),
        "closed_by": _account(m, "closed_by"),
        "reactions": _object(m, "reactions"),
        "state": _ISSUE_STATE.get(m.state, "open"),
        "state_reason": m.state_reason or None,
        "issue_closed_at": _time(m, "issue_closed_at"),
        "issue_modified_at": _time(m, "issue_modified_at"),
        "issue_created_at": _required_time(m, "issue_created_at"),
        "id": m.id,
        "created_at": _required_time(m, "created_at"),
        "modified_at": _time(m, "modified_at"),
    }


def issue(m: repository_pb2.Issue) -> JSON:
    return _issue_fields(m)


def pull_request(m: repository_pb2.PullRequest) -> JSON:
    return _issue_fields(m) | {
        "requested_reviewers": [_user(a) for a in m.requested_reviewers],
        "requested_teams": [_whole(MessageToDict(t)) for t in m.requested_teams],
        "is_merged": m.is_merged,
        "merged_at": _time(m, "merged_at"),
        "merge_commit_sha": m.merge_commit_sha or None,
        "head": _object(m, "head"),
        "base": _object(m, "base"),
        "commits": m.commits,
        "additions": m.additions,
        "deletions": m.deletions,
        "changed_files": m.changed_files,
        "review_comments": m.review_comments,
        "maintainer_can_modify": _optional(m, "maintainer_can_modify"),
        "is_mergeable": _optional(m, "is_mergeable"),
        "mergeable_state": m.mergeable_state or None,
        "merged_by": _account(m, "merged_by"),
    }


def reward(m: reward_pb2.Reward) -> JSON:
    return {
        "issue_id": m.issue_id,
        "amount": m.amount.minor_units,
        "id": m.id,
        "created_at": _required_time(m, "created_at"),
        "repository_id": m.repository_id,
        "organization_id": m.organization_id,
        "state": m.state if m.state in V1_REWARD_STATES else "created",
    }


def shown(m: reward_pb2.Reward) -> bool:
    """Whether v1 can show this reward: in US dollars, in a state its enum names."""
    return m.amount.currency == USD and m.state in V1_REWARD_STATES


def webhook(status: str, delivery: str, duplicate: bool) -> JSON:
    message = "pong" if status == "pong" else ("duplicate" if duplicate else None)
    return schemas_v1.WebhookResponse(success=True, message=message, task_id=delivery).model_dump()


def stream_event(event: Event) -> JSON | None:
    """The monolith's SSE payload `{"id", "key", "payload"}` for the events it had; None for
    the others (v2's stream carries them all)."""
    m = event.message
    key: str
    payload: JSON
    if isinstance(m, repository_events.IssueCreated):
        key, payload = "issue.created", {"issue": m.issue.id}
    elif isinstance(m, repository_events.IssueUpdated):
        key = "issue.updated"
        payload = {
            "issue_id": m.issue.id,
            "organization_id": m.issue.organization_id,
            "repository_id": m.issue.repository_id,
        }
    elif isinstance(m, repository_events.PullRequestCreated):
        key, payload = "pull_request.created", {"pull_request": m.pull_request.id}
    elif isinstance(m, repository_events.PullRequestUpdated):
        key, payload = "pull_request.updated", {"pull_request": m.pull_request.id}
    elif isinstance(m, repository_events.RepositorySyncProgress):
        # The sync reports progress per page; it names the last issue stored so far.
        key = "issue.synced"
        payload = {
            "issue": {"id": m.issue_id, "title": m.issue_title} if m.issue_id else None,
            "expected": m.expected,
            "synced": m.synced,
            "repository_id": m.repository_id,
        }
    elif isinstance(m, repository_events.RepositorySyncCompleted):
        key = "issue.sync.completed"
        payload = {"expected": m.issues, "synced": m.issues, "repository_id": m.repository_id}
    else:
        return None
    return {"id": event.headers.get("ce-id"), "key": key, "payload": payload}
