"""Pages of issues and pull requests for ListIssues / ListPullRequests, built for speed.

Why not ORM rows and mappers.issue: a page is 100 rows, and that path cost ~100 us of
Python per row (ORM instances, five JSONB columns decoded per row through SQLAlchemy's
processors, uuid -> str, Timestamp.FromDatetime...), ~10 ms of CPU per page, most of the
RPC. Here PostgreSQL returns the whole page as one JSON array whose objects already carry
the message's field names: ids as text, enums as numbers, NULLs as defaults, timestamps as
epoch microseconds, and only the parts of the JSONB columns the message shows (a
milestone's title, the reactions' total_count, a ref). Python then does one json.loads per
page, trims the accounts and labels to their proto fields, and calls the message
constructor once per row (~20 us a row in all).

Building *everything* in SQL (accounts and labels through correlated jsonb_array_elements
subqueries) moved the cost to PostgreSQL instead (~50 us a row): the arrays are trimmed
here. The rules are those of mappers.issue / mappers.pull_request, which stay the reference
(GetIssue, events); tests/test_repository_servicer.py checks that both paths agree on odd
JSONB values too.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import sqlalchemy as sa
from polar_db.models import IssueState
from sqlalchemy.ext.asyncio import AsyncSession

from .mappers import json_int, json_object, json_objects, json_str

Message = dict[str, Any]  # keyword arguments of the protobuf message's constructor


def _micros(column: str) -> str:
    # extract(epoch) is numeric (exact) since PostgreSQL 14.
    return f"(extract(epoch FROM {column}) * 1000000)::bigint"


def _text(column: str) -> str:
    return f"coalesce({column}, '')"


def _count(column: str) -> str:
    return f"coalesce({column}, 0)"


_ISSUE_TIMESTAMPS = (
    "issue_created_at",
    "issue_modified_at",
    "issue_closed_at",
    "created_at",
    "modified_at",
)
_PULL_REQUEST_TIMESTAMPS = (*_ISSUE_TIMESTAMPS, "merged_at")

_COMMON_FIELDS: dict[str, str] = {
    "id": "id::text",
    "platform": "CASE platform WHEN 'github' THEN 1 ELSE 0 END",
    "organization_id": "organization_id::text",
    "repository_id": "repository_id::text",
    "external_id": "external_id",
    "number": "number",
    "title": "title",
    "body": _text("body"),
    "state": "CASE state WHEN 'open' THEN 1 WHEN 'closed' THEN 2 ELSE 0 END",
    "author": "author",  # trimmed in Python
    "author_association": _text("author_association"),
    "labels": "labels",  # trimmed in Python
    "assignees": "assignees",  # trimmed in Python
    **{name: _micros(name) for name in _ISSUE_TIMESTAMPS},
}
ISSUE_FIELDS: dict[str, str] = {
    **_COMMON_FIELDS,
    "state_reason": _text("state_reason"),
    "comments": _count("comments"),
    "milestone": "milestone->'title'",  # checked in Python
    "reactions_total": "reactions->'total_count'",  # checked in Python
}
PULL_REQUEST_FIELDS: dict[str, str] = {
    **_COMMON_FIELDS,
    "requested_reviewers": "requested_reviewers",  # trimmed in Python
    "is_draft": "coalesce(is_draft, false)",
    "is_merged": "coalesce(is_merged, false)",
    "merged_at": _micros("merged_at"),
    "merge_commit_sha": _text("merge_commit_sha"),
    "head_ref": "head->'ref'",  # checked in Python
    "base_ref": "base->'ref'",  # checked in Python
    "commits": _count("commits"),
    "additions": _count("additions"),
    "deletions": _count("deletions"),
    "changed_files": _count("changed_files"),
    "review_comments": _count("review_comments"),
    "comments": _count("comments"),
    "state_reason": _text("state_reason"),
    "maintainer_can_modify": "maintainer_can_modify",
    "is_mergeable": "is_mergeable",
    "mergeable_state": _text("mergeable_state"),
}
# GitHub's own objects, on request only (include_github_objects): turning them into Struct
# messages costs ~20 us a row with a real milestone and reactions, three times the rest.
_OBJECT_FIELDS: dict[str, str] = {
    "assignee": "assignee",  # trimmed in Python
    "closed_by": "closed_by",  # trimmed in Python
    "milestone_object": "milestone",  # checked in Python
    "reactions": "reactions",  # checked in Python
}
_PULL_REQUEST_OBJECT_FIELDS: dict[str, str] = {
    **_OBJECT_FIELDS,
    "requested_teams": "requested_teams",  # checked in Python
    "head": "head",  # checked in Python
    "base": "base",  # checked in Python
    "merged_by": "merged_by",  # trimmed in Python
}
FIELDS: dict[tuple[str, bool], dict[str, str]] = {
    ("issues", False): ISSUE_FIELDS,
    ("issues", True): {**ISSUE_FIELDS, **_OBJECT_FIELDS},
    ("pull_requests", False): PULL_REQUEST_FIELDS,
    ("pull_requests", True): {**PULL_REQUEST_FIELDS, **_PULL_REQUEST_OBJECT_FIELDS},
}


def _page_sql(table: str, fields: dict[str, str], *, state: bool, before: bool) -> str:
    # json_build_object takes at most 100 arguments: 50 fields.
    assert len(fields) <= 50
    message = ", ".join(f"'{name}', {expr}" for name, expr in fields.items())
    where = [
        # Uncorrelated: evaluated once (an InitPlan). An unknown or deleted repository lists
        # nothing, without a separate query.
        "EXISTS (SELECT 1 FROM repositories r WHERE r.id = :repository_id"
        " AND r.deleted_at IS NULL)",
        "repository_id = :repository_id",
        "deleted_at IS NULL",
    ]
    if state:
        where.append("state = :state")
    if before:
        where.append("number < :before")
    # Served by (repository_id, number), or by the partial (repository_id, state, number)
    # WHERE deleted_at IS NULL with a state: a backward index scan that stops at :limit.
    return (
        f"SELECT coalesce(json_agg(m ORDER BY number DESC), '[]')::text FROM ("
        f"SELECT number, json_build_object({message}) AS m FROM {table} "
        f"WHERE {' AND '.join(where)} ORDER BY number DESC LIMIT :limit) page"
    )


_STATEMENTS: dict[tuple[str, bool, bool, bool], sa.TextClause] = {
    (table, objects, state, before): sa.text(_page_sql(table, fields, state=state, before=before))
    for (table, objects), fields in FIELDS.items()
    for state in (False, True)
    for before in (False, True)
}


async def page(
    session: AsyncSession,
    table: str,
    repository_id: uuid.UUID,
    *,
    state: IssueState | None,
    before: int | None,
    limit: int,
    github_objects: bool = False,
) -> list[Message]:
    """Up to `limit` rows of `table` ("issues" or "pull_requests") of a live repository,
    by number descending, below `before` when given; [] for an unknown repository. Each
    is the keyword arguments of an Issue / PullRequest message, with GitHub's own objects
    when `github_objects`."""
    params: dict[str, Any] = {"repository_id": repository_id, "limit": limit}
    if state is not None:
        params["state"] = state.value
    if before is not None:
        params["before"] = before
    statement = _STATEMENTS[(table, github_objects, state is not None, before is not None)]
    text: str = (await session.execute(statement, params)).scalar_one()
    messages: list[Message] = json.loads(text)
    finish = _finish_issue if table == "issues" else _finish_pull_request
    for message in messages:
        finish(message)
        if github_objects:
            _finish_objects(message, pull_request=table != "issues")
    return messages


def _timestamp(micros: int | None) -> dict[str, int] | None:
    if micros is None:
        return None
    seconds, rest = divmod(micros, 1_000_000)
    return {"seconds": seconds, "nanos": rest * 1000}


def _account(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    get = value.get
    return {
        "id": json_int(get("id")),
        "login": json_str(get("login")),
        "avatar_url": json_str(get("avatar_url")),
    }


def _accounts(values: Any) -> list[dict[str, Any]]:
    if not isinstance(values, list):
        return []
    return [a for a in map(_account, values) if a is not None]


def _labels(values: Any) -> list[dict[str, Any]]:
    if not isinstance(values, list):
        return []
    return [
        {
            "id": json_int(v.get("id")),
            "name": json_str(v.get("name")),
            "color": json_str(v.get("color")),
        }
        for v in values
        if isinstance(v, dict)
    ]


def _finish_common(m: Message, timestamps: tuple[str, ...]) -> None:
    for name in timestamps:
        m[name] = _timestamp(m[name])
    m["author"] = _account(m["author"])
    m["labels"] = _labels(m["labels"])
    m["assignees"] = _accounts(m["assignees"])


def _finish_objects(m: Message, *, pull_request: bool) -> None:
    m["assignee"] = _account(m["assignee"])
    m["closed_by"] = _account(m["closed_by"])
    m["milestone_object"] = json_object(m["milestone_object"])
    m["reactions"] = json_object(m["reactions"])
    if pull_request:
        m["requested_teams"] = json_objects(m["requested_teams"])
        m["head"] = json_object(m["head"])
        m["base"] = json_object(m["base"])
        m["merged_by"] = _account(m["merged_by"])


def _finish_issue(m: Message) -> None:
    _finish_common(m, _ISSUE_TIMESTAMPS)
    m["milestone"] = json_str(m["milestone"])
    m["reactions_total"] = json_int(m["reactions_total"])


def _finish_pull_request(m: Message) -> None:
    _finish_common(m, _PULL_REQUEST_TIMESTAMPS)
    m["requested_reviewers"] = _accounts(m["requested_reviewers"])
    m["head_ref"] = json_str(m["head_ref"])
    m["base_ref"] = json_str(m["base_ref"])
