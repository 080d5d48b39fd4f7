"""Protobuf messages of the services -> the API's JSON objects, in one place.

Proto3 has no null: empty strings and unset timestamps become null here, enums become
lower-case words. The objects are plain dicts, encoded by orjson (`routes._common`): this is
the hot path of every list (GET /user/organizations maps hundreds of repositories per
request), where building pydantic models cost more than the rest of the request. The shapes
are declared by the pydantic models of `schemas` (the OpenAPI document); the tests validate
every answer against them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from polar.common.v1 import common_pb2
from polar.organization.v1 import organization_pb2
from polar.repository.v1 import repository_pb2
from polar.reward.v1 import reward_pb2

from . import schemas

JSON = dict[str, Any]

_ORG_STATUS = {
    organization_pb2.ORGANIZATION_STATUS_INACTIVE: "inactive",
    organization_pb2.ORGANIZATION_STATUS_ACTIVE: "active",
    organization_pb2.ORGANIZATION_STATUS_SUSPENDED: "suspended",
}
_ISSUE_STATE: dict[int, schemas.IssueState] = {
    repository_pb2.ISSUE_STATE_OPEN: "open",
    repository_pb2.ISSUE_STATE_CLOSED: "closed",
}
ISSUE_STATE_FILTER = {
    None: repository_pb2.ISSUE_STATE_UNSPECIFIED,
    "open": repository_pb2.ISSUE_STATE_OPEN,
    "closed": repository_pb2.ISSUE_STATE_CLOSED,
}
# GitHub is the one platform of the contracts (PLATFORM_GITHUB).
PLATFORM: schemas.Platform = "github"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _time(message: Message, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    stamp = getattr(message, field)
    # Exact to the microsecond, and cheaper than Timestamp.ToDatetime (5 per repository).
    return _EPOCH + timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1000)


def _text(value: str) -> str | None:
    return value or None


def user(m: organization_pb2.User) -> JSON:
    return {
        "id": m.id,
        "username": m.username,
        "email": m.email or None,
        "email_verified": m.email_verified,
        "avatar_url": m.avatar_url or None,
        "created_at": _time(m, "created_at"),
        "modified_at": _time(m, "modified_at"),
    }


def organization(m: organization_pb2.Organization) -> JSON:
    return {
        "id": m.id,
        "platform": PLATFORM,
        "name": m.name,
        "external_id": m.external_id,
        "avatar_url": m.avatar_url or None,
        "is_personal": m.is_personal,
        "installation_id": m.installation_id or None,
        "status": _ORG_STATUS.get(m.status, "unspecified"),
        "installation_created_at": _time(m, "installation_created_at"),
        "installation_updated_at": _time(m, "installation_updated_at"),
        "installation_suspended_at": _time(m, "installation_suspended_at"),
        "installation_suspended_by": m.installation_suspended_by or None,
        "installation_permissions": (
            MessageToDict(m.installation_permissions)
            if m.HasField("installation_permissions")
            else None
        ),
        "created_at": _time(m, "created_at"),
        "modified_at": _time(m, "modified_at"),
    }


def organization_with_repositories(
    m: organization_pb2.Organization, repositories: list[JSON]
) -> JSON:
    return organization(m) | {"repositories": repositories}


def repository(m: repository_pb2.Repository) -> JSON:
    return {
        "id": m.id,
        "platform": PLATFORM,
        "organization_id": m.organization_id,
        "external_id": m.external_id,
        "name": m.name,
        "description": m.description or None,
        "is_private": m.is_private,
        "is_fork": m.is_fork,
        "is_archived": m.is_archived,
        "stars": m.stars,
        "forks": m.forks,
        "watchers": m.watchers,
        "open_issues": m.open_issues,
        "main_branch": m.main_branch or None,
        "topics": list(m.topics),
        "license": m.license or None,
        "homepage": m.homepage or None,
        "repository_created_at": _time(m, "repository_created_at"),
        "repository_pushed_at": _time(m, "repository_pushed_at"),
        "repository_modified_at": _time(m, "repository_modified_at"),
        "created_at": _time(m, "created_at"),
        "modified_at": _time(m, "modified_at"),
    }


def _account(m: common_pb2.GitHubAccount) -> JSON:
    return {"id": m.id, "login": m.login, "avatar_url": m.avatar_url or None}


def _author(message: repository_pb2.Issue | repository_pb2.PullRequest) -> JSON | None:
    return _account(message.author) if message.HasField("author") else None


def _labels(labels: Iterable[common_pb2.Label]) -> list[JSON]:
    return [{"id": x.id, "name": x.name, "color": x.color} for x in labels]


def issue(m: repository_pb2.Issue) -> JSON:
    return {
        "id": m.id,
        "platform": PLATFORM,
        "organization_id": m.organization_id,
        "repository_id": m.repository_id,
        "external_id": m.external_id,
        "number": m.number,
        "title": m.title,
        "body": _text(m.body),
        "state": _ISSUE_STATE.get(m.state),
        "state_reason": _text(m.state_reason),
        "comments": m.comments,
        "author": _author(m),
        "author_association": _text(m.author_association),
        "labels": _labels(m.labels),
        "assignees": [_account(a) for a in m.assignees],
        "milestone": _text(m.milestone),
        "reactions_total": m.reactions_total,
        "issue_created_at": _time(m, "issue_created_at"),
        "issue_modified_at": _time(m, "issue_modified_at"),
        "issue_closed_at": _time(m, "issue_closed_at"),
        "created_at": _time(m, "created_at"),
        "modified_at": _time(m, "modified_at"),
    }


def pull_request(m: repository_pb2.PullRequest) -> JSON:
    return {
        "id": m.id,
        "platform": PLATFORM,
        "organization_id": m.organization_id,
        "repository_id": m.repository_id,
        "external_id": m.external_id,
        "number": m.number,
        "title": m.title,
        "body": _text(m.body),
        "state": _ISSUE_STATE.get(m.state),
        "author": _author(m),
        "author_association": _text(m.author_association),
        "labels": _labels(m.labels),
        "assignees": [_account(a) for a in m.assignees],
        "requested_reviewers": [_account(a) for a in m.requested_reviewers],
        "is_draft": m.is_draft,
        "is_merged": m.is_merged,
        "merged_at": _time(m, "merged_at"),
        "merge_commit_sha": _text(m.merge_commit_sha),
        "head_ref": _text(m.head_ref),
        "base_ref": _text(m.base_ref),
        "commits": m.commits,
        "additions": m.additions,
        "deletions": m.deletions,
        "changed_files": m.changed_files,
        "review_comments": m.review_comments,
        "issue_created_at": _time(m, "issue_created_at"),
        "issue_modified_at": _time(m, "issue_modified_at"),
        "issue_closed_at": _time(m, "issue_closed_at"),
        "created_at": _time(m, "created_at"),
        "modified_at": _time(m, "modified_at"),
    }


def reward(m: reward_pb2.Reward) -> JSON:
    return {
        "id": m.id,
        "issue_id": m.issue_id,
        "repository_id": m.repository_id,
        "organization_id": m.organization_id,
        "amount": {"currency": m.amount.currency, "amount": m.amount.minor_units},
        "state": m.state,
        "backer_user_id": _text(m.backer_user_id),
        "email": _text(m.email),
        "created_at": _time(m, "created_at"),
    }


def page(items: list[JSON], next_page_token: str) -> JSON:
    return {"items": items, "next_cursor": next_page_token or None}
