"""ingest.py: GitHub objects (webhook and REST shapes) to rows, and the guarded batch upserts."""

from __future__ import annotations

import copy
import itertools
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from polar_db.models import Issue, IssueState, OutboxEvent, PullRequest, Repository
from polar_db.models.repository import KnownOrganization as Organization
from polar_repository import ingest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

Sessionmaker = async_sessionmaker[AsyncSession]
ORG, REPO = uuid.uuid4(), uuid.uuid4()
_ids = itertools.count(80_000_000)


def load(github_fixtures: Path, path: str) -> Any:
    return json.loads((github_fixtures / path).read_text())


def test_issue_row_from_a_webhook(github_fixtures: Path) -> None:
    issue = load(github_fixtures, "webhooks/issues/opened.payload.json")["issue"]
    row = ingest.issue_row(issue, organization_id=ORG, repository_id=REPO)
    assert row["external_id"] == 444500041
    assert (row["number"], row["state"]) == (1, IssueState.open)
    assert row["issue_created_at"] == datetime(2019, 5, 15, 15, 20, 18, tzinfo=UTC)
    assert row["author"] == {
        "login": "Codertocat",
        "id": 21031067,
        "avatar_url": "https://avatars1.githubusercontent.com/u/21031067?v=4",
        "html_url": "https://github.com/Codertocat",
        "type": "User",
        "site_admin": False,
    }
    assert row["labels"][0] == {
        "id": 1362934389,
        "name": "bug",
        "color": "d73a4a",
        "default": True,
        "description": "Something isn't working",
    }
    assert row["milestone"]["title"] == "v1.0"
    assert "url" not in row["reactions"]


def test_partial_issue_leaves_unknown_columns_out(github_fixtures: Path) -> None:
    issue = load(github_fixtures, "webhooks/issues/pinned.payload.json")["issue"]
    row = ingest.issue_row(issue, organization_id=ORG, repository_id=REPO)
    assert "labels" not in row
    assert "assignee" not in row
    assert row["state"] == IssueState.open  # no state: closed_at is null


def test_rest_issue_pages_skip_pull_requests(github_fixtures: Path) -> None:
    items = load(github_fixtures, "rest/issues/list-for-repo.json")
    assert all(ingest.is_pull_request(i) for i in items)
    assert ingest.issue_rows(items, organization_id=ORG, repository_id=REPO) == []
    plain = [{k: v for k, v in items[0].items() if k != "pull_request"}]
    [row] = ingest.issue_rows(plain, organization_id=ORG, repository_id=REPO)
    assert row["closed_by"]["login"] == "octocat"
    assert row["state_reason"] == plain[0]["state_reason"]
    with pytest.raises(ingest.InvalidObject):
        ingest.issue_row(items[0], organization_id=ORG, repository_id=REPO)


def test_pull_request_rows_full_and_listed(github_fixtures: Path) -> None:
    full = load(github_fixtures, "rest/pulls/get.json")
    row = ingest.pull_request_row(full, organization_id=ORG, repository_id=REPO)
    assert (row["commits"], row["is_merged"], row["is_mergeable"]) == (
        full["commits"],
        full["merged"],
        full["mergeable"],
    )
    assert row["head"]["ref"] == full["head"]["ref"]
    assert set(row["head"]["repo"]) == {"id", "name", "full_name", "private"}
    [listed] = ingest.pull_request_rows(
        load(github_fixtures, "rest/pulls/list.json"), organization_id=ORG, repository_id=REPO
    )
    # The list has no commits/additions/merged...: those columns are left alone.
    assert not {"commits", "additions", "is_mergeable", "merged_by"} & set(listed)
    assert listed["is_merged"] is True  # from merged_at


def test_repository_rows(github_fixtures: Path) -> None:
    listed = load(github_fixtures, "rest/apps/list-repos-accessible-to-installation.json")
    row = ingest.repository_row(listed["repositories"][0])
    assert (row["name"], row["main_branch"], row["license"]) == ("Hello-World", "master", "MIT")
    assert row["repository_modified_at"] == datetime(2011, 1, 26, 19, 14, 43, tzinfo=UTC)
    short = load(github_fixtures, "webhooks/installation/created.payload.json")["repositories"][0]
    assert ingest.repository_row(short) == {
        "external_id": 186853002,
        "name": "Hello-World",
        "is_private": False,
    }


def test_parse_time() -> None:
    assert ingest.parse_time(0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert ingest.parse_time(None) is None
    with pytest.raises(ingest.InvalidObject):
        ingest.parse_time(["no"])


# --- store -------------------------------------------------------------------------------------


async def new_repo(sessionmaker: Sessionmaker) -> Repository:
    n = next(_ids)
    async with sessionmaker.begin() as session:
        org = Organization(
            id=uuid.uuid4(),
            platform="github",
            name=f"ingest-{n}",
            external_id=n,
            installation_id=n,
            status="active",
        )
        session.add(org)
        await session.flush()
        [repo] = await ingest.upsert_repositories(
            session, org.id, [{"external_id": n, "name": "r", "is_private": False}]
        )
    return repo.row


async def test_listed_pull_requests_keep_the_details(
    sessionmaker: Sessionmaker, github_fixtures: Path
) -> None:
    repo = await new_repo(sessionmaker)
    ids = {"organization_id": repo.organization_id, "repository_id": repo.id}
    full = load(github_fixtures, "rest/pulls/get.json") | {"id": next(_ids)}
    listed = load(github_fixtures, "rest/pulls/list.json")[0] | {
        "id": full["id"],
        "title": "retitled",
        "updated_at": "2030-01-01T00:00:00Z",
    }
    async with sessionmaker.begin() as session:
        await ingest.upsert_pull_requests(session, [ingest.pull_request_row(full, **ids)])
        [written] = await ingest.upsert_pull_requests(
            session, [ingest.pull_request_row(listed, **ids)]
        )
    assert written.row.title == "retitled"
    assert written.row.commits == full["commits"]  # kept: the list does not have it


async def test_batch_with_several_versions_and_key_sets(
    sessionmaker: Sessionmaker, github_fixtures: Path
) -> None:
    repo = await new_repo(sessionmaker)
    ids = {"organization_id": repo.organization_id, "repository_id": repo.id}
    issue = load(github_fixtures, "webhooks/issues/opened.payload.json")["issue"]
    issue["id"] = next(_ids)
    newer = copy.deepcopy(issue) | {"title": "newer", "updated_at": "2020-01-01T00:00:00Z"}
    pinned = load(github_fixtures, "webhooks/issues/pinned.payload.json")["issue"]
    pinned |= {"id": next(_ids), "number": 2}
    rows = [ingest.issue_row(i, **ids) for i in (newer, issue, pinned)]
    async with sessionmaker.begin() as session:
        written = await ingest.upsert_issues(session, rows)
        assert sorted(u.row.title for u in written) == [
            "Spelling error in the README file",
            "newer",
        ]
        assert all(u.created for u in written)
        # The same again: nothing written, no events.
        before = await session.scalar(sa.select(sa.func.count()).select_from(OutboxEvent))
        assert await ingest.upsert_issues(session, rows) == []
        after = await session.scalar(sa.select(sa.func.count()).select_from(OutboxEvent))
        assert before == after
        # Deleted: a tombstone, and further upserts do not revive it.
        [gone] = await ingest.delete_issues(session, rows[:1])
        assert gone.deleted_at is not None
        assert await ingest.delete_issues(session, rows[:1]) == []
        later = copy.deepcopy(newer) | {"updated_at": "2021-01-01T00:00:00Z"}
        assert await ingest.upsert_issues(session, [ingest.issue_row(later, **ids)]) == []
        stored = await session.scalar(sa.select(Issue).where(Issue.external_id == issue["id"]))
        assert stored is not None
        assert stored.title == "newer"
        count = await session.scalar(
            sa.select(sa.func.count()).where(PullRequest.repository_id == repo.id)
        )
        assert count == 0


async def test_deleted_repository_name_can_be_reused(sessionmaker: Sessionmaker) -> None:
    repo = await new_repo(sessionmaker)
    async with sessionmaker.begin() as session:
        await ingest.delete_repositories(session, Repository.id == repo.id, content=True)
        [new] = await ingest.upsert_repositories(
            session,
            repo.organization_id,
            [{"external_id": next(_ids), "name": repo.name, "is_private": True}],
        )
        old = await session.get(Repository, repo.id)
    assert new.created
    assert new.row.name == repo.name
    assert old is not None
    assert old.name == f"{repo.name}~deleted~{repo.external_id}"
