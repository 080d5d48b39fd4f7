"""Every RPC through a real in-process gRPC server and channel, against real PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from polar.common.v1.common_pb2 import PLATFORM_GITHUB, PLATFORM_UNSPECIFIED, Money
from polar.repository.v1 import events_pb2
from polar.repository.v1 import repository_service_pb2 as pb
from polar.repository.v1.repository_pb2 import (
    ISSUE_STATE_CLOSED,
    ISSUE_STATE_OPEN,
    ISSUE_STATE_UNSPECIFIED,
)
from polar_db.models import Issue, IssueState, OutboxEvent, Repository
from polar_db.models.repository import KnownOrganization as Organization
from polar_kit.grpc.status import details_of
from polar_kit.paging import encode_token
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

if TYPE_CHECKING:
    from polar.repository.v1.repository_service_pb2_grpc import RepositoryServiceAsyncStub

Stub: TypeAlias = "RepositoryServiceAsyncStub"
# Factory fixtures of conftest.py (test modules cannot import conftest: no package here).
MakeOrg: TypeAlias = Any
MakeRepo: TypeAlias = Any
MakeIssues: TypeAlias = Any
MakePullRequests: TypeAlias = Any
FakeSync: TypeAlias = Any
_ids = itertools.count(30_000_000)
Sessionmaker: TypeAlias = async_sessionmaker[AsyncSession]
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


async def expect_code(call: Any, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    return info.value.details() or ""


async def outbox(sessionmaker: Sessionmaker, key: str) -> list[tuple[str, bytes]]:
    """(subject, payload) of the outbox events whose payload mentions `key`, oldest first."""
    async with sessionmaker() as session:
        rows = await session.execute(
            sa.select(OutboxEvent.subject, OutboxEvent.payload).order_by(OutboxEvent.seq)
        )
        return [(subject, payload) for subject, payload in rows if key.encode() in payload]


async def outbox_subjects(sessionmaker: Sessionmaker, key: str) -> list[str]:
    return [subject for subject, _ in await outbox(sessionmaker, key)]


def repo_input(org_id: uuid.UUID | str, **overrides: Any) -> pb.RepositoryInput:
    n = next(_ids)
    fields: dict[str, Any] = {
        "organization_id": str(org_id),
        "external_id": n,
        "name": f"repo-{n}",
        "description": "mirrored",
        "stars": 5,
        "topics": ["python", "grpc"],
        "main_branch": "main",
    }
    return pb.RepositoryInput(**(fields | overrides))


async def soft_delete(sessionmaker: Sessionmaker, model: Any, id: uuid.UUID) -> None:
    async with sessionmaker.begin() as session:
        await session.execute(
            sa.update(model).where(model.id == id).values(deleted_at=datetime.now(UTC))
        )


# --- every RPC: an empty request is the caller's mistake -------------------------------------

RPCS = [
    "GetRepository",
    "LookupRepository",
    "ListRepositories",
    "BatchUpsertRepositories",
    "DeleteRepository",
    "SyncRepository",
    "GetRepositorySyncState",
    "GetIssue",
    "ListIssues",
    "GetPullRequest",
    "ListPullRequests",
    "CreateReward",
    "ListRewards",
]


def test_rpcs_cover_the_service() -> None:
    service = pb.DESCRIPTOR.services_by_name["RepositoryService"]
    assert sorted(m.name for m in service.methods) == sorted(RPCS)


@pytest.mark.parametrize("rpc", RPCS)
async def test_empty_request_is_invalid_argument(stub: Stub, rpc: str) -> None:
    method = pb.DESCRIPTOR.services_by_name["RepositoryService"].methods_by_name[rpc]
    request_class: type[Message] = getattr(pb, method.input_type.name)
    details = await expect_code(getattr(stub, rpc)(request_class()), INVALID)
    assert details  # a message a person can act on


@pytest.mark.parametrize(
    "rpc",
    ["GetRepository", "DeleteRepository", "SyncRepository", "GetIssue", "GetPullRequest"],
)
@pytest.mark.parametrize("bad_id", ["nope", "123", "0000-1111", "x" * 500])
async def test_malformed_ids_are_invalid_argument(stub: Stub, rpc: str, bad_id: str) -> None:
    request_class = getattr(pb, f"{rpc}Request")
    details = await expect_code(getattr(stub, rpc)(request_class(id=bad_id)), INVALID)
    assert "id must be a UUID" in details


@pytest.mark.parametrize(
    "rpc", ["GetRepository", "DeleteRepository", "SyncRepository", "GetIssue", "GetPullRequest"]
)
async def test_unknown_ids_are_not_found(stub: Stub, rpc: str) -> None:
    request_class = getattr(pb, f"{rpc}Request")
    await expect_code(getattr(stub, rpc)(request_class(id=UNKNOWN_ID)), NOT_FOUND)


@pytest.mark.parametrize("rpc", ["ListIssues", "ListPullRequests"])
async def test_lists_by_repository_validate(stub: Stub, make_repo: MakeRepo, rpc: str) -> None:
    request_class = getattr(pb, f"{rpc}Request")
    call = getattr(stub, rpc)
    await expect_code(call(request_class(repository_id="bad")), INVALID)
    await expect_code(call(request_class(repository_id=UNKNOWN_ID)), NOT_FOUND)
    repo = await make_repo()
    details = await expect_code(
        call(request_class(repository_id=str(repo.id), page_size=-1)), INVALID
    )
    assert "page_size must not be negative" in details
    for token in ["%%%", "bm90LWpzb24", encode_token(["a", "b", "c"]), encode_token(["x"])]:
        details = await expect_code(
            call(request_class(repository_id=str(repo.id), page_token=token)), INVALID
        )
        assert "page_token" in details


# --- repositories ----------------------------------------------------------------------------


async def test_get_repository(stub: Stub, make_repo: MakeRepo) -> None:
    repo = await make_repo(description="hello", stars=42, topics=["a", "b"])
    got = (await stub.GetRepository(pb.GetRepositoryRequest(id=str(repo.id)))).repository
    assert got.id == str(repo.id)
    assert got.organization_id == str(repo.organization_id)
    assert got.platform == PLATFORM_GITHUB
    assert (got.name, got.description, got.stars, list(got.topics)) == (
        repo.name,
        "hello",
        42,
        ["a", "b"],
    )
    assert got.created_at.seconds > 0


async def test_soft_deleted_repository_is_invisible(
    stub: Stub, make_repo: MakeRepo, sessionmaker: Sessionmaker
) -> None:
    repo = await make_repo()
    await soft_delete(sessionmaker, Repository, repo.id)
    await expect_code(stub.GetRepository(pb.GetRepositoryRequest(id=str(repo.id))), NOT_FOUND)
    listed = await stub.ListRepositories(
        pb.ListRepositoriesRequest(organization_ids=[str(repo.organization_id)])
    )
    assert list(listed.repositories) == []


async def test_lookup_repository(stub: Stub, make_org: MakeOrg, make_repo: MakeRepo) -> None:
    org = await make_org()
    repo = await make_repo(org)
    await make_repo(name=repo.name)  # same name in another organization
    request = pb.LookupRepositoryRequest(
        platform=PLATFORM_GITHUB, organization_name=org.name, repository_name=repo.name
    )
    got = (await stub.LookupRepository(request)).repository
    assert got.id == str(repo.id)

    bad = [
        pb.LookupRepositoryRequest(organization_name=org.name, repository_name=repo.name),
        pb.LookupRepositoryRequest(platform=PLATFORM_GITHUB, repository_name=repo.name),
        pb.LookupRepositoryRequest(platform=PLATFORM_GITHUB, organization_name=org.name),
        pb.LookupRepositoryRequest(
            platform=PLATFORM_GITHUB, organization_name="  ", repository_name=repo.name
        ),
        pb.LookupRepositoryRequest(
            platform=PLATFORM_UNSPECIFIED, organization_name=org.name, repository_name=repo.name
        ),
    ]
    for request in bad:
        await expect_code(stub.LookupRepository(request), INVALID)
    for org_name, name in [(org.name, "missing"), ("missing-org", repo.name)]:
        await expect_code(
            stub.LookupRepository(
                pb.LookupRepositoryRequest(
                    platform=PLATFORM_GITHUB, organization_name=org_name, repository_name=name
                )
            ),
            NOT_FOUND,
        )


async def test_lookup_repository_of_deleted_organization_is_not_found(
    stub: Stub, make_org: MakeOrg, make_repo: MakeRepo, sessionmaker: Sessionmaker
) -> None:
    org = await make_org()
    repo = await make_repo(org)
    await soft_delete(sessionmaker, Organization, org.id)
    request = pb.LookupRepositoryRequest(
        platform=PLATFORM_GITHUB, organization_name=org.name, repository_name=repo.name
    )
    await expect_code(stub.LookupRepository(request), NOT_FOUND)


async def test_list_repositories_pages_through_every_row_once(
    stub: Stub, make_org: MakeOrg, make_repo: MakeRepo
) -> None:
    orgs = [await make_org() for _ in range(3)]
    expected = set()
    for i in range(23):
        # Repeated names across organizations: the id breaks ties in the sort key.
        expected.add(str((await make_repo(orgs[i % 3], name=f"name-{i // 3}")).id))
    await make_repo()  # another organization: not listed
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        response = await stub.ListRepositories(
            pb.ListRepositoriesRequest(
                organization_ids=[str(o.id) for o in orgs], page_size=5, page_token=token
            )
        )
        pages += 1
        assert len(response.repositories) <= 5
        seen += [r.id for r in response.repositories]
        token = response.next_page_token
        if not token:
            break
    assert pages == 5
    assert len(seen) == len(set(seen)) == 23
    assert set(seen) == expected


async def test_list_repositories_validates(stub: Stub, make_org: MakeOrg) -> None:
    org = await make_org()
    details = await expect_code(
        stub.ListRepositories(pb.ListRepositoriesRequest(organization_ids=[])), INVALID
    )
    assert "organization_ids" in details
    too_many = [str(uuid.uuid4()) for _ in range(101)]
    details = await expect_code(
        stub.ListRepositories(pb.ListRepositoriesRequest(organization_ids=too_many)), INVALID
    )
    assert "at most 100" in details
    details = await expect_code(
        stub.ListRepositories(pb.ListRepositoriesRequest(organization_ids=[str(org.id), "bad"])),
        INVALID,
    )
    assert "organization_ids[1]" in details
    await expect_code(
        stub.ListRepositories(
            pb.ListRepositoriesRequest(organization_ids=[str(org.id)], page_size=-5)
        ),
        INVALID,
    )
    for token in ["!!", encode_token(["name"]), encode_token(["name", "not-a-uuid"])]:
        await expect_code(
            stub.ListRepositories(
                pb.ListRepositoriesRequest(organization_ids=[str(org.id)], page_token=token)
            ),
            INVALID,
        )
    # Unknown organizations simply have no repositories; 100 ids are allowed.
    response = await stub.ListRepositories(
        pb.ListRepositoriesRequest(organization_ids=too_many[:100])
    )
    assert list(response.repositories) == []


async def test_list_repositories_page_size_is_capped(
    stub: Stub, make_org: MakeOrg, make_repo: MakeRepo
) -> None:
    org = await make_org()
    for _ in range(105):
        await make_repo(org)
    default = await stub.ListRepositories(
        pb.ListRepositoriesRequest(organization_ids=[str(org.id)])
    )
    assert len(default.repositories) == 50
    capped = await stub.ListRepositories(
        pb.ListRepositoriesRequest(organization_ids=[str(org.id)], page_size=1000)
    )
    assert len(capped.repositories) == 100
    assert capped.next_page_token


async def test_batch_upsert_creates_then_updates(
    stub: Stub, make_org: MakeOrg, sessionmaker: Sessionmaker
) -> None:
    org = await make_org()
    inputs = [repo_input(org.id) for _ in range(3)]
    first = await stub.BatchUpsertRepositories(
        pb.BatchUpsertRepositoriesRequest(repositories=inputs)
    )
    assert list(first.created) == [True, True, True]
    assert [r.external_id for r in first.repositories] == [i.external_id for i in inputs]
    assert all(r.organization_id == str(org.id) for r in first.repositories)
    assert list(first.repositories[0].topics) == ["python", "grpc"]

    # Reversed order, one changed: the response follows the request's order.
    changed = repo_input(org.id, external_id=inputs[1].external_id, name="renamed", stars=9)
    second = await stub.BatchUpsertRepositories(
        pb.BatchUpsertRepositoriesRequest(repositories=[inputs[2], changed, inputs[0]])
    )
    assert list(second.created) == [False, False, False]
    assert [r.id for r in second.repositories] == [first.repositories[i].id for i in (2, 1, 0)]
    assert (second.repositories[1].name, second.repositories[1].stars) == ("renamed", 9)

    renamed_id = first.repositories[1].id
    assert await outbox_subjects(sessionmaker, renamed_id) == [
        "polar.repository.v1.repository_created",
        "polar.repository.v1.repository_updated",
    ]
    # Unchanged rows get no repository_updated.
    assert await outbox_subjects(sessionmaker, first.repositories[0].id) == [
        "polar.repository.v1.repository_created"
    ]
    payload = (await outbox(sessionmaker, renamed_id))[-1][1]
    event = events_pb2.RepositoryUpdated.FromString(payload)
    assert event.repository.name == "renamed"


async def test_batch_upsert_of_1000_repositories(stub: Stub, make_org: MakeOrg) -> None:
    orgs = [await make_org() for _ in range(2)]
    inputs = [repo_input(orgs[i % 2].id) for i in range(1000)]
    response = await stub.BatchUpsertRepositories(
        pb.BatchUpsertRepositoriesRequest(repositories=inputs)
    )
    assert len(response.repositories) == 1000
    assert all(response.created)
    listed = await stub.ListRepositories(
        pb.ListRepositoriesRequest(organization_ids=[str(orgs[0].id)], page_size=100)
    )
    assert len(listed.repositories) == 100


async def test_batch_upsert_validates(stub: Stub, make_org: MakeOrg) -> None:
    org = await make_org()
    ok = repo_input(org.id)

    async def invalid(*inputs: pb.RepositoryInput) -> str:
        request = pb.BatchUpsertRepositoriesRequest(repositories=list(inputs))
        return await expect_code(stub.BatchUpsertRepositories(request), INVALID)

    assert "at least one" in await invalid()
    assert "at most 1000" in await invalid(*[repo_input(org.id) for _ in range(1001)])
    assert "repositories[1].organization_id" in await invalid(ok, repo_input("not-a-uuid"))
    assert "repositories[0].organization_id is required" in await invalid(repo_input(""))
    assert "external_id" in await invalid(repo_input(org.id, external_id=0))
    assert "external_id" in await invalid(repo_input(org.id, external_id=-3))
    assert "name must not be empty" in await invalid(repo_input(org.id, name=" "))
    assert "name must be" in await invalid(repo_input(org.id, name="a/b"))
    assert "name must be" in await invalid(repo_input(org.id, name="x" * 101))
    assert "stars must not be negative" in await invalid(repo_input(org.id, stars=-1))
    assert "forks must not be negative" in await invalid(repo_input(org.id, forks=-1))
    assert "topics[1]" in await invalid(repo_input(org.id, topics=["ok", ""]))
    assert "repeats the external_id" in await invalid(
        ok, repo_input(org.id, external_id=ok.external_id)
    )
    assert "repeats the name" in await invalid(ok, repo_input(org.id, name=ok.name))


async def test_batch_upsert_unknown_organizations_are_not_found(
    stub: Stub, make_org: MakeOrg, sessionmaker: Sessionmaker
) -> None:
    org = await make_org()
    deleted = await make_org()
    await soft_delete(sessionmaker, Organization, deleted.id)
    missing = str(uuid.uuid4())
    details = await expect_code(
        stub.BatchUpsertRepositories(
            pb.BatchUpsertRepositoriesRequest(
                repositories=[repo_input(org.id), repo_input(missing), repo_input(deleted.id)]
            )
        ),
        NOT_FOUND,
    )
    assert missing in details
    assert str(deleted.id) in details
    assert str(org.id) not in details


async def test_batch_upsert_revives_a_deleted_repository(
    stub: Stub, make_org: MakeOrg, sessionmaker: Sessionmaker
) -> None:
    org = await make_org()
    created = await stub.BatchUpsertRepositories(
        pb.BatchUpsertRepositoriesRequest(repositories=[repo_input(org.id)])
    )
    repo = created.repositories[0]
    await stub.DeleteRepository(pb.DeleteRepositoryRequest(id=repo.id))
    again = await stub.BatchUpsertRepositories(
        pb.BatchUpsertRepositoriesRequest(
            repositories=[repo_input(org.id, external_id=repo.external_id, name=repo.name)]
        )
    )
    assert again.repositories[0].id == repo.id
    got = await stub.GetRepository(pb.GetRepositoryRequest(id=repo.id))
    assert got.repository.name == repo.name
    assert (await outbox_subjects(sessionmaker, repo.id))[-1] == (
        "polar.repository.v1.repository_created"
    )


async def test_batch_upsert_names(stub: Stub, make_org: MakeOrg) -> None:
    org = await make_org()
    first = (
        await stub.BatchUpsertRepositories(
            pb.BatchUpsertRepositoriesRequest(repositories=[repo_input(org.id, name="taken")])
        )
    ).repositories[0]
    # A live repository holds its name.
    details = await expect_code(
        stub.BatchUpsertRepositories(
            pb.BatchUpsertRepositoriesRequest(repositories=[repo_input(org.id, name="taken")])
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert str(first.external_id) in details
    # A deleted one does not (GitHub lets a new repository take a deleted one's name).
    await stub.DeleteRepository(pb.DeleteRepositoryRequest(id=first.id))
    second = await stub.BatchUpsertRepositories(
        pb.BatchUpsertRepositoriesRequest(repositories=[repo_input(org.id, name="taken")])
    )
    assert second.created[0]
    assert second.repositories[0].id != first.id


async def test_batch_upsert_transfer_moves_content(
    stub: Stub,
    make_org: MakeOrg,
    make_repo: MakeRepo,
    make_issues: MakeIssues,
    sessionmaker: Sessionmaker,
) -> None:
    old, new = await make_org(), await make_org()
    repo = await make_repo(old)
    (issue,) = await make_issues(repo, 1)
    moved = await stub.BatchUpsertRepositories(
        pb.BatchUpsertRepositoriesRequest(
            repositories=[repo_input(new.id, external_id=repo.external_id, name=repo.name)]
        )
    )
    assert moved.repositories[0].id == str(repo.id)
    assert moved.repositories[0].organization_id == str(new.id)
    got = await stub.GetIssue(pb.GetIssueRequest(id=str(issue.id)))
    assert got.issue.organization_id == str(new.id)
    # The reward service moves the rewards from this event (services/reward).
    assert "polar.repository.v1.repository_updated" in await outbox_subjects(
        sessionmaker, str(repo.id)
    )


async def test_delete_repository(
    stub: Stub,
    make_repo: MakeRepo,
    make_issues: MakeIssues,
    make_pull_requests: MakePullRequests,
    sessionmaker: Sessionmaker,
) -> None:
    repo = await make_repo()
    issues = await make_issues(repo, 3)
    (pr,) = await make_pull_requests(repo, 1, start=10)
    await stub.DeleteRepository(pb.DeleteRepositoryRequest(id=str(repo.id)))
    await expect_code(stub.GetRepository(pb.GetRepositoryRequest(id=str(repo.id))), NOT_FOUND)
    await expect_code(stub.GetIssue(pb.GetIssueRequest(id=str(issues[0].id))), NOT_FOUND)
    await expect_code(stub.GetPullRequest(pb.GetPullRequestRequest(id=str(pr.id))), NOT_FOUND)
    await expect_code(stub.ListIssues(pb.ListIssuesRequest(repository_id=str(repo.id))), NOT_FOUND)
    # Deleting twice: the second time it is gone.
    await expect_code(stub.DeleteRepository(pb.DeleteRepositoryRequest(id=str(repo.id))), NOT_FOUND)
    events = await outbox(sessionmaker, str(repo.id))
    assert [s for s, _ in events] == ["polar.repository.v1.repository_deleted"]
    deleted = events_pb2.RepositoryDeleted.FromString(events[0][1])
    assert (deleted.organization_id, deleted.external_id) == (
        str(repo.organization_id),
        repo.external_id,
    )
    # The rows stay as tombstones.
    async with sessionmaker() as session:
        row = await session.get(Repository, repo.id)
        assert row is not None
        assert row.deleted_at is not None


async def test_sync_repository(stub: Stub, make_repo: MakeRepo, fake_sync: FakeSync) -> None:
    repo = await make_repo()
    first = await stub.SyncRepository(pb.SyncRepositoryRequest(id=str(repo.id)))
    assert first.started
    assert fake_sync.started[-1] == repo.id
    again = await stub.SyncRepository(pb.SyncRepositoryRequest(id=str(repo.id)))
    assert not again.started


# --- issues and pull requests ----------------------------------------------------------------


async def test_get_issue_maps_github_fields(
    stub: Stub, make_repo: MakeRepo, make_issues: MakeIssues
) -> None:
    repo = await make_repo()
    (issue,) = await make_issues(
        repo,
        1,
        start=7,
        assignees=[{"id": 3, "login": "carol"}, "garbage"],
        state=IssueState.closed,
        state_reason="completed",
    )
    got = (await stub.GetIssue(pb.GetIssueRequest(id=str(issue.id)))).issue
    assert (got.number, got.title, got.state, got.state_reason) == (
        7,
        "issue 7",
        ISSUE_STATE_CLOSED,
        "completed",
    )
    assert (got.author.id, got.author.login) == (1, "octocat")
    assert [(label.name, label.color) for label in got.labels] == [("bug", "d73a4a")]
    assert [a.login for a in got.assignees] == ["carol"]
    assert (got.milestone, got.reactions_total) == ("v1", 2)
    assert got.repository_id == str(repo.id)
    assert got.issue_created_at.seconds > 0


async def test_get_pull_request(
    stub: Stub, make_repo: MakeRepo, make_pull_requests: MakePullRequests
) -> None:
    repo = await make_repo()
    (pr,) = await make_pull_requests(repo, 1, start=3, is_merged=True, is_draft=True)
    got = (await stub.GetPullRequest(pb.GetPullRequestRequest(id=str(pr.id)))).pull_request
    assert (got.number, got.head_ref, got.base_ref, got.is_merged, got.is_draft) == (
        3,
        "feature-3",
        "main",
        True,
        True,
    )
    assert [r.login for r in got.requested_reviewers] == ["hubot"]
    # An issue id is not a pull request id, and the other way round.
    await expect_code(stub.GetIssue(pb.GetIssueRequest(id=str(pr.id))), NOT_FOUND)


async def test_list_issues_pages_newest_first_exactly_once(
    stub: Stub, make_repo: MakeRepo, make_issues: MakeIssues
) -> None:
    repo = await make_repo()
    await make_issues(repo, 250)
    await make_issues(await make_repo(), 5)  # another repository
    numbers: list[int] = []
    token = ""
    sizes = []
    while True:
        response = await stub.ListIssues(
            pb.ListIssuesRequest(repository_id=str(repo.id), page_size=100, page_token=token)
        )
        sizes.append(len(response.issues))
        numbers += [i.number for i in response.issues]
        token = response.next_page_token
        if not token:
            break
    assert sizes == [100, 100, 50]
    assert numbers == list(range(250, 0, -1))


async def test_list_issues_exact_multiple_of_page_size(
    stub: Stub, make_repo: MakeRepo, make_issues: MakeIssues
) -> None:
    repo = await make_repo()
    await make_issues(repo, 10)
    first = await stub.ListIssues(pb.ListIssuesRequest(repository_id=str(repo.id), page_size=5))
    second = await stub.ListIssues(
        pb.ListIssuesRequest(
            repository_id=str(repo.id), page_size=5, page_token=first.next_page_token
        )
    )
    assert [i.number for i in second.issues] == [5, 4, 3, 2, 1]
    assert second.next_page_token == ""
    default = await stub.ListIssues(pb.ListIssuesRequest(repository_id=str(repo.id)))
    assert len(default.issues) == 10


async def test_list_issues_state_filter_and_soft_delete(
    stub: Stub, make_repo: MakeRepo, make_issues: MakeIssues, sessionmaker: Sessionmaker
) -> None:
    repo = await make_repo()
    await make_issues(repo, 6, start=1)
    closed = await make_issues(repo, 4, start=7, state=IssueState.closed)
    await soft_delete(sessionmaker, Issue, closed[0].id)  # number 7

    async def numbers(state: Any, page_size: int = 3) -> list[int]:
        found: list[int] = []
        token = ""
        while True:
            response = await stub.ListIssues(
                pb.ListIssuesRequest(
                    repository_id=str(repo.id), state=state, page_size=page_size, page_token=token
                )
            )
            found += [i.number for i in response.issues]
            token = response.next_page_token
            if not token:
                return found

    assert await numbers(ISSUE_STATE_OPEN) == [6, 5, 4, 3, 2, 1]
    assert await numbers(ISSUE_STATE_CLOSED) == [10, 9, 8]
    assert await numbers(ISSUE_STATE_UNSPECIFIED) == [10, 9, 8, 6, 5, 4, 3, 2, 1]
    await expect_code(stub.GetIssue(pb.GetIssueRequest(id=str(closed[0].id))), NOT_FOUND)
    details = await expect_code(
        stub.ListIssues(pb.ListIssuesRequest(repository_id=str(repo.id), state=99)),  # type: ignore[arg-type]
        INVALID,
    )
    assert "state" in details


async def test_list_pull_requests(
    stub: Stub,
    make_repo: MakeRepo,
    make_pull_requests: MakePullRequests,
    make_issues: MakeIssues,
) -> None:
    repo = await make_repo()
    await make_issues(repo, 3)  # issues are not pull requests
    await make_pull_requests(repo, 5, start=10)
    await make_pull_requests(repo, 2, start=20, state=IssueState.closed)
    response = await stub.ListPullRequests(
        pb.ListPullRequestsRequest(repository_id=str(repo.id), page_size=4)
    )
    assert [p.number for p in response.pull_requests] == [21, 20, 14, 13]
    rest = await stub.ListPullRequests(
        pb.ListPullRequestsRequest(
            repository_id=str(repo.id), page_size=4, page_token=response.next_page_token
        )
    )
    assert [p.number for p in rest.pull_requests] == [12, 11, 10]
    assert rest.next_page_token == ""
    closed = await stub.ListPullRequests(
        pb.ListPullRequestsRequest(repository_id=str(repo.id), state=ISSUE_STATE_CLOSED)
    )
    assert [p.number for p in closed.pull_requests] == [21, 20]


# --- rewards: moved to the reward service (decision 0027) -------------------------------------


async def test_the_deprecated_reward_methods_point_to_the_reward_service(stub: Stub) -> None:
    details = await expect_code(
        stub.CreateReward(pb.CreateRewardRequest(issue_id=UNKNOWN_ID, amount=Money())),
        grpc.StatusCode.UNIMPLEMENTED,
    )
    assert "polar.reward.v1.RewardService" in details
    await expect_code(
        stub.ListRewards(pb.ListRewardsRequest(repository_id=UNKNOWN_ID)),
        grpc.StatusCode.UNIMPLEMENTED,
    )


async def test_required_fields_are_the_contracts(stub: Stub) -> None:
    """REQUIRED (google.api.field_behavior in repository_service.proto) is enforced by the
    server for every method, each missing field named in a BadRequest violation."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.LookupRepository(pb.LookupRepositoryRequest(organization_name="o"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in details_of(caught.value).field_violations] == [
        "platform",
        "repository_name",
    ]


# --- lists are built by PostgreSQL (listing.py); Get uses mappers: they must agree --------------

ODD_VALUES: list[dict[str, Any]] = [
    {},
    {
        "author": {"id": "12", "login": 7, "avatar_url": None},
        "labels": [{"id": 1.5, "name": "x"}, "garbage", None, {"color": "fff", "id": 2**62}],
        "assignees": {"id": 1},
        "milestone": "v2",
        "reactions": {"total_count": True},
    },
    {
        "author": None,
        "labels": None,
        "assignees": None,
        "milestone": None,
        "reactions": None,
        "body": None,
        "comments": None,
        "state_reason": None,
        "author_association": None,
    },
    {
        "author": ["not", "an", "object"],
        "labels": "bug",
        "assignees": [{"id": 10**19, "login": "big"}, {"login": "ü-ñ", "avatar_url": "a"}],
        "milestone": {"title": 3},
        "reactions": {"total_count": 10**18 - 1},
        "title": 'ünïcödé "quotes" \\ and \n newlines',
        "issue_created_at": datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        "issue_closed_at": datetime(2024, 5, 6, 7, 8, 9, 123_456, tzinfo=UTC),
        "state": IssueState.closed,
    },
]


async def test_list_issues_matches_get_issue(
    stub: Stub, make_repo: MakeRepo, make_issues: MakeIssues, sessionmaker: Sessionmaker
) -> None:
    repo = await make_repo()
    made = [
        (await make_issues(repo, 1, start=n + 1, **values))[0]
        for n, values in enumerate(ODD_VALUES)
    ]
    async with sessionmaker.begin() as session:  # a modified_at with microseconds
        await session.execute(
            sa.update(Issue)
            .where(Issue.id == made[0].id)
            .values(modified_at=datetime(2025, 1, 2, 3, 4, 5, 678_901, tzinfo=UTC))
        )
    listed = await stub.ListIssues(
        pb.ListIssuesRequest(repository_id=str(repo.id), include_github_objects=True)
    )
    assert len(listed.issues) == len(ODD_VALUES)
    for issue in listed.issues:
        got = await stub.GetIssue(pb.GetIssueRequest(id=issue.id))
        assert issue == got.issue


async def test_list_pull_requests_matches_get_pull_request(
    stub: Stub, make_repo: MakeRepo, make_pull_requests: MakePullRequests
) -> None:
    repo = await make_repo()
    odd: list[dict[str, Any]] = [
        *ODD_VALUES,
        {"head": None, "base": {"ref": 1}, "requested_reviewers": "x", "is_draft": None},
        {
            "merged_at": datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
            "is_merged": True,
            "merge_commit_sha": "abc",
            "commits": 3,
            "additions": 10,
            "deletions": 2,
            "changed_files": 1,
            "review_comments": 4,
        },
    ]
    for n, values in enumerate(odd):
        await make_pull_requests(repo, 1, start=n + 1, **values)
    listed = await stub.ListPullRequests(
        pb.ListPullRequestsRequest(repository_id=str(repo.id), include_github_objects=True)
    )
    assert len(listed.pull_requests) == len(odd)
    for pr in listed.pull_requests:
        got = await stub.GetPullRequest(pb.GetPullRequestRequest(id=pr.id))
        assert pr == got.pull_request


async def test_lists_carry_githubs_own_objects(
    stub: Stub, make_repo: MakeRepo, make_pull_requests: MakePullRequests
) -> None:
    """What the monolith's v1 contract shows (milestone, reactions, refs, closed_by,
    merged_by...) comes back from the lists as the payloads carried it."""
    repo = await make_repo()
    milestone = {"id": 5, "number": 2, "title": "v2", "state": "open", "due_on": None}
    reactions = {"total_count": 3, "+1": 2, "heart": 1}
    head = {"label": "o:f", "ref": "f", "sha": "abc", "user": {"id": 1, "login": "o"}}
    values: dict[str, Any] = {
        "milestone": milestone,
        "reactions": reactions,
        "closed_by": {"id": 9, "login": "closer"},
        "assignee": {"id": 8, "login": "doer"},
        "head": head,
        "base": {"ref": "main"},
        "merged_by": {"id": 7, "login": "merger"},
        "requested_teams": [{"id": 3, "slug": "core"}, "garbage"],
        "maintainer_can_modify": True,
        "is_mergeable": False,
        "mergeable_state": "dirty",
        "comments": 4,
        "state_reason": "completed",
    }
    await make_pull_requests(repo, 1, **values)
    request = pb.ListPullRequestsRequest(repository_id=str(repo.id))
    # Without asking, a page skips GitHub's objects (v2 shows none of them)...
    [lean] = (await stub.ListPullRequests(request)).pull_requests
    assert not lean.HasField("milestone_object")
    assert not lean.HasField("head")
    assert (lean.mergeable_state, lean.comments) == ("dirty", 4)
    # ... and carries them when asked.
    request.include_github_objects = True
    [pr] = (await stub.ListPullRequests(request)).pull_requests
    assert MessageToDict(pr.milestone_object) == milestone
    assert MessageToDict(pr.reactions) == reactions
    assert MessageToDict(pr.head) == head
    assert [MessageToDict(t) for t in pr.requested_teams] == [{"id": 3, "slug": "core"}]
    assert (pr.closed_by.login, pr.assignee.login, pr.merged_by.login) == (
        "closer",
        "doer",
        "merger",
    )
    assert pr.maintainer_can_modify is True
    assert pr.HasField("is_mergeable")
    assert pr.is_mergeable is False
    assert (pr.mergeable_state, pr.comments, pr.state_reason) == ("dirty", 4, "completed")
    got = await stub.GetPullRequest(pb.GetPullRequestRequest(id=pr.id))
    assert got.pull_request == pr


async def test_batch_upsert_racing_for_a_name(stub: Stub, make_org: MakeOrg) -> None:
    """Two new repositories claiming one name at once: one wins, the other gets
    ALREADY_EXISTS (whether it lost at the check or at the unique index), never INTERNAL."""
    org = await make_org()
    for _ in range(5):
        name = f"contested-{next(_ids)}"
        calls = [
            stub.BatchUpsertRepositories(
                pb.BatchUpsertRepositoriesRequest(repositories=[repo_input(org.id, name=name)])
            )
            for _ in range(2)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(errors) == 1, results
        assert errors[0].code() == grpc.StatusCode.ALREADY_EXISTS
