"""GitHub's repository, issue and pull request objects -> our rows, and their batched upserts.

Webhook payloads and the REST API (the sync's /installation/repositories, /repos/{o}/{r}/issues
and /pulls pages) carry the same object shapes, so both go through these functions.

Rules every store function keeps, so webhooks and syncs may arrive in any order and any
number of times:
- an older object never overwrites a newer one: a row is only updated when GitHub's
  updated_at of the incoming object is at least the stored one (from a webhook: later than
  it; an equal time with other values is a same-second tie, resolved by re-reading the
  object from GitHub, see upsert_issues);
- a row whose values would not change is not touched and gets no event (a redelivery or a
  re-sync is silent);
- a key missing from a row (the REST list of pulls has no `commits`, an installation lists
  repositories by name only) leaves the stored column as it is: rows are grouped by their
  key sets, one statement per group;
- deleted issues stay as tombstones (deleted_at set), so a late delivery cannot revive them.
Events (created / updated / deleted) are recorded for the rows actually written, in bulk.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from polar_db.models import (
    Issue,
    IssueState,
    Platform,
    PullRequest,
    Repository,
)
from polar_db.upsert import Upserted, excluded, upsert_many
from sqlalchemy import ColumnElement
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from . import events

Row = dict[str, Any]
M = TypeVar("M", Issue, PullRequest)


class InvalidObject(ValueError):
    """A GitHub object lacks what a row needs (the message can never succeed)."""


# --- payload helpers -------------------------------------------------------------------------

# Hypermedia links and ids of no use to Polar: dropped from the JSONB copies of GitHub objects.
_NOISE = frozenset({"url", "node_id", "gravatar_id", "_links"})
_KEPT_URLS = frozenset({"avatar_url", "html_url"})


def clean(value: Any) -> Any:
    """A GitHub object without its API links (`*_url` but avatar_url and html_url)."""
    if isinstance(value, dict):
        return {
            k: clean(v)
            for k, v in value.items()
            if k not in _NOISE and (k in _KEPT_URLS or not k.endswith("_url"))
        }
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def parse_time(value: Any) -> datetime | None:
    """GitHub timestamps: ISO 8601 strings, or epoch seconds in some push-era payloads."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise InvalidObject(f"not a timestamp: {value!r}")


def _required(obj: Mapping[str, Any], key: str) -> Any:
    value = obj.get(key)
    if value is None:
        raise InvalidObject(f"{key} is missing")
    return value


def _int(obj: Mapping[str, Any], key: str) -> int:
    value = _required(obj, key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidObject(f"{key} is not an integer: {value!r}")
    return value


# The fields kept of GitHub's most frequent objects: picking them is several times cheaper
# than walking the object with clean(), and the webhook hot path builds thousands a second.
_ACCOUNT = ("login", "id", "avatar_url", "html_url", "type", "site_admin")
_LABEL = ("id", "name", "color", "default", "description")
_MILESTONE = (
    "id",
    "number",
    "title",
    "description",
    "state",
    "open_issues",
    "closed_issues",
    "created_at",
    "updated_at",
    "closed_at",
    "due_on",
    "html_url",
)


def _pick(value: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {k: value[k] for k in keys if k in value}


def _account(value: Any) -> dict[str, Any] | None:
    return _pick(value, _ACCOUNT) if isinstance(value, dict) else None


def _accounts(value: Any) -> list[Any]:
    return [_pick(v, _ACCOUNT) for v in value if isinstance(v, dict)] if value else []


def _labels(value: Any) -> list[Any]:
    # The REST API may give a label as a bare name.
    return [_pick(v, _LABEL) if isinstance(v, dict) else v for v in value] if value else []


def _milestone(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    milestone = _pick(value, _MILESTONE)
    if "creator" in value:
        milestone["creator"] = _account(value["creator"])
    return milestone


def _reactions(value: Any) -> dict[str, Any] | None:
    return {k: v for k, v in value.items() if k != "url"} if isinstance(value, dict) else None


def _ref(value: Any) -> dict[str, Any] | None:
    """A pull request's head/base without the full repository object it embeds."""
    if not isinstance(value, dict):
        return None
    repo = value.get("repo")
    return {
        "label": value.get("label"),
        "ref": value.get("ref"),
        "sha": value.get("sha"),
        "user": _account(value.get("user")),
        "repo": (
            {
                "id": repo.get("id"),
                "name": repo.get("name"),
                "full_name": repo.get("full_name"),
                "private": repo.get("private"),
            }
            if isinstance(repo, dict)
            else None
        ),
    }


def _license(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    name = value.get("spdx_id") or value.get("key") or value.get("name")
    return str(name) if name and name != "NOASSERTION" else None


# --- rows ------------------------------------------------------------------------------------


def is_pull_request(item: Mapping[str, Any]) -> bool:
    """The REST issues API also lists pull requests: those items carry a `pull_request` key."""
    return item.get("pull_request") is not None


def repository_row(repo: Mapping[str, Any]) -> Row:
    """A repository object (webhook `repository`, REST repo) -> Repository columns.

    The repositories an installation lists carry only id, name and private: their row has
    just those (see upsert_repositories), so they never clobber what a full object gave.
    """
    row: Row = {
        "external_id": _int(repo, "id"),
        "name": str(_required(repo, "name")),
        "is_private": bool(repo.get("private", False)),
    }
    if "updated_at" not in repo:
        return row
    row |= {
        "description": repo.get("description"),
        "open_issues": repo.get("open_issues_count", repo.get("open_issues")),
        "forks": repo.get("forks_count", repo.get("forks")),
        "stars": repo.get("stargazers_count"),
        "watchers": repo.get("watchers_count", repo.get("watchers")),
        "main_branch": repo.get("default_branch"),
        "topics": [t for t in repo.get("topics") or [] if isinstance(t, str)],
        "license": _license(repo.get("license")),
        "homepage": repo.get("homepage") or None,
        "repository_pushed_at": parse_time(repo.get("pushed_at")),
        "repository_modified_at": parse_time(repo.get("updated_at")),
        "repository_created_at": parse_time(repo.get("created_at")),
        "is_fork": repo.get("fork"),
        "is_issues_enabled": repo.get("has_issues"),
        "is_wiki_enabled": repo.get("has_wiki"),
        "is_projects_enabled": repo.get("has_projects"),
        "is_pages_enabled": repo.get("has_pages"),
        "is_downloads_enabled": repo.get("has_downloads"),
        "is_archived": repo.get("archived"),
        "is_disabled": repo.get("disabled"),
    }
    return row


# Issue columns read only when the object has the key: some payloads are partial (issues.pinned
# has no state, labels or assignee), and a missing key means "unknown", not "none".
_ISSUE_OPTIONAL: dict[str, tuple[str, Any]] = {
    "body": ("body", lambda v: v),
    "user": ("author", _account),
    "author_association": ("author_association", lambda v: v),
    "labels": ("labels", _labels),
    "assignee": ("assignee", _account),
    "assignees": ("assignees", _accounts),
    "milestone": ("milestone", _milestone),
    "comments": ("comments", lambda v: v if isinstance(v, int) else None),
    "state_reason": ("state_reason", lambda v: v),
    "closed_by": ("closed_by", _account),
    "reactions": ("reactions", _reactions),
}


def _issue_fields(
    item: Mapping[str, Any], organization_id: uuid.UUID, repository_id: uuid.UUID
) -> Row:
    created_at = parse_time(_required(item, "created_at"))
    closed_at = parse_time(item.get("closed_at"))
    # Partial payloads lack the state: closed_at tells it.
    state = item.get("state") or ("closed" if closed_at else "open")
    if state not in ("open", "closed"):
        raise InvalidObject(f"state must be open or closed, got {state!r}")
    row: Row = {
        "organization_id": organization_id,
        "repository_id": repository_id,
        "external_id": _int(item, "id"),
        "number": _int(item, "number"),
        "title": str(item.get("title") or ""),
        "state": IssueState(state),
        "issue_closed_at": closed_at,
        "issue_modified_at": parse_time(item.get("updated_at")) or created_at,
        "issue_created_at": created_at,
    }
    for key, (column, convert) in _ISSUE_OPTIONAL.items():
        if key in item:
            row[column] = convert(item[key])
    return row


def issue_row(
    item: Mapping[str, Any], *, organization_id: uuid.UUID, repository_id: uuid.UUID
) -> Row:
    """An issue object (webhook `issue`, REST issue) -> Issue columns."""
    if is_pull_request(item):
        raise InvalidObject("a pull request, not an issue")
    return _issue_fields(item, organization_id, repository_id)


def issue_rows(
    items: Iterable[Mapping[str, Any]], *, organization_id: uuid.UUID, repository_id: uuid.UUID
) -> list[Row]:
    """Rows of a REST issues page, without the pull requests it also lists."""
    return [
        _issue_fields(i, organization_id, repository_id) for i in items if not is_pull_request(i)
    ]


# Only the full pull request object (webhook, GET /pulls/{n}) has these; the list has not.
_PULL_DETAILS = {
    "commits": "commits",
    "additions": "additions",
    "deletions": "deletions",
    "changed_files": "changed_files",
    "review_comments": "review_comments",
    "maintainer_can_modify": "maintainer_can_modify",
    "mergeable": "is_mergeable",
    "rebaseable": "is_rebaseable",
    "mergeable_state": "mergeable_state",
}


def pull_request_row(
    item: Mapping[str, Any], *, organization_id: uuid.UUID, repository_id: uuid.UUID
) -> Row:
    """A pull request object (webhook `pull_request`, REST pull) -> PullRequest columns."""
    row = _issue_fields(item, organization_id, repository_id)
    merged_at = parse_time(item.get("merged_at"))
    row |= {
        "requested_reviewers": _accounts(item.get("requested_reviewers")),
        "requested_teams": clean(item.get("requested_teams") or []),
        "is_draft": bool(item.get("draft", False)),
        "merged_at": merged_at,
        "merge_commit_sha": item.get("merge_commit_sha"),
        "head": _ref(item.get("head")),
        "base": _ref(item.get("base")),
        # `merged` is only in the full object; merged_at says the same everywhere.
        "is_merged": bool(item["merged"]) if "merged" in item else merged_at is not None,
    }
    for key, column in _PULL_DETAILS.items():
        if key in item:
            row[column] = item[key]
    if "merged_by" in item:
        row["merged_by"] = _account(item["merged_by"])
    return row


def pull_request_rows(
    items: Iterable[Mapping[str, Any]], *, organization_id: uuid.UUID, repository_id: uuid.UUID
) -> list[Row]:
    return [
        pull_request_row(i, organization_id=organization_id, repository_id=repository_id)
        for i in items
    ]


# --- store -----------------------------------------------------------------------------------


def _by_keys(rows: Iterable[Row]) -> list[list[Row]]:
    """Rows grouped by their key sets (upsert_many needs one key set per statement)."""
    groups: dict[frozenset[str], list[Row]] = {}
    for row in rows:
        groups.setdefault(frozenset(row), []).append(row)
    return list(groups.values())


def _newest(rows: Iterable[Row], modified: str, ties: list[Row] | None = None) -> list[Row]:
    """One row per external id, the most recently modified (the later one on a tie), sorted
    by external id so concurrent batches lock rows in the same order (no deadlocks). With
    `ties`, a row tied with another (same time, other values) is added to it."""
    best: dict[int, Row] = {}
    for row in rows:
        current = best.get(row["external_id"])
        if current is None or _not_older(row.get(modified), current.get(modified)):
            if ties is not None and current is not None and _tied(row, current, modified):
                ties.append(row)
            best[row["external_id"]] = row
    return [best[k] for k in sorted(best)]


_NOT_CONTENT = frozenset({"id", "platform"})  # generated per row, not GitHub's values


def _tied(a: Mapping[str, Any], b: Mapping[str, Any], modified: str) -> bool:
    """Same time of modification, other values: two edits within one second."""
    if a.get(modified) is None or a.get(modified) != b.get(modified):
        return False
    return any(a[k] != b.get(k) for k in a if k not in _NOT_CONTENT)


def _not_older(a: datetime | None, b: datetime | None) -> bool:
    return a is None or b is None or a >= b


def _changes(table: sa.Table, model: type[Any], columns: Sequence[str]) -> ColumnElement[bool]:
    """True when at least one of `columns` would change (so a no-op update is skipped)."""
    new = excluded(model)
    return sa.tuple_(*(table.c[c] for c in columns)).is_distinct_from(
        sa.tuple_(*(new[c] for c in columns))
    )


def _update_columns(row: Row, conflict: str) -> list[str]:
    return [c for c in row if c not in (conflict, "id")]


async def upsert_repositories(
    session: AsyncSession,
    organization_id: uuid.UUID,
    rows: Sequence[Row],
    *,
    revive: bool = False,
) -> list[Upserted[Repository]]:
    """Insert or update repositories (rows from repository_row) of one organization.

    A full row updates a live repository when it is not older than the stored one; with
    `revive` (the installation has access to it again) it also brings back a deleted one.
    A short row (installation listing: name and privacy only) creates the repository, moves
    it to this organization or revives it, and otherwise leaves a repository described by a
    full object alone. Moving a repository moves its issues and pull requests too.
    """
    table = Repository.__table__
    assert isinstance(table, sa.Table)
    written: list[Upserted[Repository]] = []
    # deleted_at: None brings a deleted repository back where `where` lets it.
    prepared = [
        {"id": uuid.uuid4(), "platform": Platform.github, **row}
        | {"organization_id": organization_id, "deleted_at": None}
        for row in rows
    ]
    for group in _by_keys(prepared):
        group = _newest(group, "repository_modified_at")
        full = "repository_modified_at" in group[0]
        await _free_names(session, organization_id, group)
        columns = _update_columns(group[0], "external_id")
        stored = Repository.repository_modified_at
        if full:
            fresh = sa.or_(stored.is_(None), excluded(Repository).repository_modified_at >= stored)
            live = sa.true() if revive else Repository.deleted_at.is_(None)
            where = sa.and_(live, fresh)
        else:
            where = sa.or_(
                stored.is_(None),
                Repository.deleted_at.is_not(None),
                Repository.organization_id != excluded(Repository).organization_id,
            )
        written += await upsert_many(
            session,
            Repository,
            group,
            conflict=["external_id"],
            where=sa.and_(where, _changes(table, Repository, columns)),
        )
    moved = [u.row.id for u in written if not u.created]
    if moved:
        await _move_content(session, moved)
    await events.repositories_upserted(session, written)
    return written


async def _free_names(
    session: AsyncSession, organization_id: uuid.UUID, rows: Sequence[Row]
) -> None:
    """A deleted repository keeps its row; if GitHub reuses its name (a new repository with
    the same name), the tombstone's name gets a suffix so the unique (organization, name)
    holds. Live name clashes (renames seen out of order) are left to fail and be retried."""
    names = [r["name"] for r in rows]
    ids = [r["external_id"] for r in rows]
    await session.execute(
        sa.update(Repository)
        .where(
            Repository.organization_id == organization_id,
            Repository.name.in_(names),
            Repository.external_id.not_in(ids),
            Repository.deleted_at.is_not(None),
        )
        .values(name=Repository.name + "~deleted~" + sa.cast(Repository.external_id, sa.Text))
        .execution_options(synchronize_session=False)
    )


async def _move_content(session: AsyncSession, repository_ids: Sequence[uuid.UUID]) -> None:
    """Give issues and pull requests the organization of their repository (after a transfer;
    the reward service follows from repository_updated); a no-op (index lookup) for
    repositories that did not move."""
    for model in (Issue, PullRequest):
        await session.execute(
            sa.update(model)
            .where(
                model.repository_id == Repository.id,
                Repository.id.in_(repository_ids),
                model.organization_id != Repository.organization_id,
            )
            .values(organization_id=Repository.organization_id)
            .execution_options(synchronize_session=False)
        )


def _item_guard(
    model: type[M], table: sa.Table, columns: Sequence[str], *, strict: bool
) -> ColumnElement[bool]:
    stored, incoming = model.issue_modified_at, excluded(model).issue_modified_at
    return sa.and_(
        model.deleted_at.is_(None),
        sa.or_(stored.is_(None), incoming > stored if strict else incoming >= stored),
        _changes(table, model, columns),
    )


async def _upsert_items(
    session: AsyncSession, model: type[M], rows: Sequence[Row], ties: list[Row] | None
) -> list[Upserted[M]]:
    table = model.__table__
    assert isinstance(table, sa.Table)
    written: list[Upserted[M]] = []
    for group in _by_keys({"id": uuid.uuid4(), "platform": Platform.github, **r} for r in rows):
        group = _newest(group, "issue_modified_at", ties)
        columns = _update_columns(group[0], "external_id")
        upserted = await upsert_many(
            session,
            model,
            group,
            conflict=["external_id"],
            where=_item_guard(model, table, columns, strict=ties is not None),
        )
        written += upserted
        if ties is not None:
            ties += await _tied_with_stored(session, model, group, upserted)
    return written


async def _tied_with_stored(
    session: AsyncSession, model: type[M], rows: Sequence[Row], written: Sequence[Upserted[M]]
) -> list[Row]:
    """The rows not written although they differ from the stored ones of the same time."""
    done = {u.row.external_id for u in written}
    waiting = {r["external_id"]: r for r in rows if r["external_id"] not in done}
    if not waiting:
        return []
    stored = await session.scalars(
        sa.select(model).where(model.external_id.in_(list(waiting)), model.deleted_at.is_(None)),
        execution_options={"populate_existing": True},
    )
    return [
        waiting[item.external_id]
        for item in stored
        if _tied(waiting[item.external_id], _values(item), "issue_modified_at")
    ]


def _values(item: Issue | PullRequest) -> Row:
    table = type(item).__table__
    assert isinstance(table, sa.Table)
    return {c.key: getattr(item, c.key) for c in table.columns}


async def upsert_issues(
    session: AsyncSession,
    rows: Sequence[Row],
    *,
    ties: list[Row] | None = None,
    origins: events.Origins | None = None,
) -> list[Upserted[Issue]]:
    """Insert or update issues (rows from issue_row / issue_rows); events for those written.

    Same-second ties: GitHub's updated_at has one-second resolution, so two edits within
    one second carry the same time and their order is unknown. Objects read from the REST
    API are GitHub's current state: on a tie they are written. Webhook deliveries pass
    `ties`: on a tie they are not written but added to it, for the caller to re-read the
    object from GitHub (refresh.Refresher), whose answer then wins. `origins`: the webhook
    each row came from, by GitHub id (events.Origins)."""
    written = await _upsert_items(session, Issue, rows, ties)
    await events.issues_upserted(session, written, origins)
    return written


async def upsert_pull_requests(
    session: AsyncSession,
    rows: Sequence[Row],
    *,
    ties: list[Row] | None = None,
    origins: events.Origins | None = None,
) -> list[Upserted[PullRequest]]:
    """Insert or update pull requests (rows from pull_request_row); events for those
    written. `ties`, `origins`: as for upsert_issues."""
    written = await _upsert_items(session, PullRequest, rows, ties)
    await events.pull_requests_upserted(session, written, origins)
    return written


async def delete_issues(
    session: AsyncSession, rows: Sequence[Row], origins: events.Origins | None = None
) -> list[Issue]:
    """Soft-delete issues (rows from issue_row of the deleted/transferred issue): a tombstone
    is written even for an issue not seen yet, so its late `opened` cannot create it.
    issue_deleted events for the issues deleted now; deleting twice changes nothing."""
    deleted: list[Issue] = []
    now = datetime.now(UTC)
    for group in _by_keys({"id": uuid.uuid4(), "platform": Platform.github, **r} for r in rows):
        group = _newest(group, "issue_modified_at")
        stmt = (
            pg_insert(Issue)
            .values([{**row, "deleted_at": now} for row in group])
            .on_conflict_do_update(
                index_elements=["external_id"],
                set_={"deleted_at": now, "modified_at": now},
                where=Issue.deleted_at.is_(None),
            )
            .returning(Issue)
        )
        result = await session.scalars(stmt, execution_options={"populate_existing": True})
        deleted += result.all()
    await events.issues_deleted(session, deleted, origins)
    return deleted


async def delete_repositories(
    session: AsyncSession, *where: ColumnElement[bool], content: bool
) -> list[Repository]:
    """Soft-delete the repositories matching `where`; repository_deleted events for those
    deleted now. With `content` (the repository is gone on GitHub), their issues and pull
    requests are soft-deleted too (the reward service then cancels their open rewards), even
    if the repository itself was deleted before (e.g. removed from the installation first)."""
    now = datetime.now(UTC)
    if content:
        ids = list(await session.scalars(sa.select(Repository.id).where(*where)))
        await _delete_content(session, repository_ids=ids)
    deleted = list(
        await session.scalars(
            sa.update(Repository)
            .where(Repository.deleted_at.is_(None), *where)
            .values(deleted_at=now, modified_at=now)
            .returning(Repository),
            execution_options={"populate_existing": True, "synchronize_session": False},
        )
    )
    await events.repositories_deleted(session, deleted)
    return deleted


async def delete_organization_content(
    session: AsyncSession, organization_id: uuid.UUID
) -> list[Repository]:
    """Everything of a deleted organization: repositories, issues and pull requests
    soft-deleted (open rewards: the reward service). Idempotent."""
    await _delete_content(session, organization_id=organization_id)
    return await delete_repositories(
        session, Repository.organization_id == organization_id, content=False
    )


async def _delete_content(
    session: AsyncSession,
    *,
    repository_ids: Sequence[uuid.UUID] | None = None,
    organization_id: uuid.UUID | None = None,
) -> None:
    """Soft-delete the issues and pull requests of some repositories (or of an organization)
    with their issue_deleted / pull_request_deleted events (the reward service cancels the
    issues' open rewards on issue_deleted)."""
    now = datetime.now(UTC)
    ids, org = repository_ids, organization_id
    for model, record in (
        (Issue, events.issues_deleted),
        (PullRequest, events.pull_requests_deleted),
    ):
        scope = model.repository_id.in_(ids) if ids is not None else model.organization_id == org
        deleted = await session.execute(
            sa.update(model)
            .where(scope, model.deleted_at.is_(None))
            .values(deleted_at=now, modified_at=now)
            .returning(model.id, model.repository_id, model.organization_id)
            .execution_options(synchronize_session=False)
        )
        await record(session, deleted.all())
