"""Issue 10 on the repository service: crafted page tokens, suspended organizations (the
rewards' share moved to services/reward with the rewards, decision 0027)."""

from __future__ import annotations

import base64
import uuid
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import pytest
from polar.repository.v1 import repository_service_pb2 as pb
from polar.repository.v1.repository_service_pb2_grpc import RepositoryServiceStub
from polar_db.models import OrganizationStatus
from polar_kit.grpc import RunningServer, auth
from polar_kit.paging import encode_token
from polar_repository.settings import RepositorySettings

if TYPE_CHECKING:
    from polar.repository.v1.repository_service_pb2_grpc import RepositoryServiceAsyncStub

Stub: TypeAlias = "RepositoryServiceAsyncStub"
# Factory fixtures of conftest.py (test modules cannot import conftest: no package here).
MakeOrg: TypeAlias = Any
MakeRepo: TypeAlias = Any
MakeIssues: TypeAlias = Any
INVALID = grpc.StatusCode.INVALID_ARGUMENT

CRAFTED = [
    "%%%",
    "////",
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode(),
    "A" * 10_000,
    encode_token([2**31]),
    encode_token([2**63]),
    encode_token([10**30]),
    encode_token([0]),
    encode_token([-5]),
    base64.urlsafe_b64encode(b"[1.5]").decode(),
    encode_token([True]),
    encode_token(["a", "not-a-uuid"]),
    encode_token(["a\x00b", str(uuid.uuid4())]),
    encode_token([7, 8]),
]
# Valid as a repository name key, not as a reward's (created_at, id).
BAD_TIMES = [
    encode_token(["2024-01-01T00:00:00", str(uuid.uuid4())]),  # no time zone
    encode_token(["not a time", str(uuid.uuid4())]),
]


async def code_of(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("token", CRAFTED)
async def test_crafted_page_tokens_are_invalid_argument(
    stub: Stub, make_repo: MakeRepo, make_issues: MakeIssues, token: str
) -> None:
    repo = await make_repo()
    await make_issues(repo, 3)
    rid, oid = str(repo.id), str(repo.organization_id)
    calls = [
        stub.ListIssues(pb.ListIssuesRequest(repository_id=rid, page_token=token)),
        stub.ListPullRequests(pb.ListPullRequestsRequest(repository_id=rid, page_token=token)),
        stub.ListRepositories(pb.ListRepositoriesRequest(organization_ids=[oid], page_token=token)),
    ]
    assert [await code_of(c) for c in calls] == [INVALID] * len(calls)


async def test_a_suspended_organization_is_not_synced(
    stub: Stub, make_org: MakeOrg, make_repo: MakeRepo
) -> None:
    repo = await make_repo(await make_org(status=OrganizationStatus.suspended))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SyncRepository(pb.SyncRepositoryRequest(id=str(repo.id)))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


# --- who may call ------------------------------------------------------------------------------


async def test_only_allowed_callers_reach_the_repository_service(
    server: RunningServer, settings: RepositorySettings, make_repo: MakeRepo
) -> None:
    repo = await make_repo()
    target = f"127.0.0.1:{server.port}"
    get = pb.GetRepositoryRequest(id=str(repo.id))
    delete = pb.DeleteRepositoryRequest(id=str(repo.id))
    async with grpc.aio.insecure_channel(target) as ch:
        stub = RepositoryServiceStub(ch)
        assert await code_of(stub.GetRepository(get)) == grpc.StatusCode.UNAUTHENTICATED
        assert await code_of(stub.DeleteRepository(delete)) == grpc.StatusCode.UNAUTHENTICATED
    async with auth.channel(target, auth.credentials(auth.GATEWAY, settings)) as ch:
        stub = RepositoryServiceStub(ch)
        assert await code_of(stub.GetRepository(get)) == grpc.StatusCode.OK
        assert await code_of(stub.DeleteRepository(delete)) == grpc.StatusCode.PERMISSION_DENIED
        sync = stub.SyncRepository(pb.SyncRepositoryRequest(id=str(repo.id)))
        assert await code_of(sync) == grpc.StatusCode.PERMISSION_DENIED
    async with auth.channel(target, auth.credentials(auth.ORGANIZATION, settings)) as ch:
        stub = RepositoryServiceStub(ch)
        assert await code_of(stub.GetRepository(get)) == grpc.StatusCode.PERMISSION_DENIED
    async with auth.operator_channel(target, settings) as ch:
        got = await RepositoryServiceStub(ch).GetRepository(get)
    assert got.repository.id == str(repo.id)  # nothing was deleted
