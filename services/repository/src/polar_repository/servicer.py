"""gRPC transport: validate, map proto <-> domain, call the service. No SQL, no rules."""

from __future__ import annotations

import uuid
from typing import Any, TypeAlias

import grpc
from polar.repository.v1 import repository_service_pb2 as pb
from polar.repository.v1 import repository_service_pb2_grpc as pb_grpc
from polar_kit.errors import InvalidArgument
from polar_kit.grpc import current_session
from polar_kit.validation import page_size, parse_uuid, require_text

from . import mappers, service
from .exceptions import MovedToRewardService
from .service import SyncStarter

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

MAX_ORGANIZATION_IDS = 100
MAX_BATCH = 1000


class RepositoryServicer(pb_grpc.RepositoryServiceServicer):
    def __init__(self, sync: SyncStarter) -> None:
        self.sync = sync

    # --- repositories ----------------------------------------------------------------------

    async def GetRepository(
        self, request: pb.GetRepositoryRequest, context: Context
    ) -> pb.GetRepositoryResponse:
        found = await service.get_repository(current_session(), parse_uuid("id", request.id))
        return pb.GetRepositoryResponse(repository=mappers.repository(found))

    async def LookupRepository(
        self, request: pb.LookupRepositoryRequest, context: Context
    ) -> pb.LookupRepositoryResponse:
        platform = mappers.platform_from_proto(request.platform)
        org_name = require_text("organization_name", request.organization_name)
        name = require_text("repository_name", request.repository_name)
        found = await service.lookup_repository(current_session(), platform, org_name, name)
        return pb.LookupRepositoryResponse(repository=mappers.repository(found))

    async def ListRepositories(
        self, request: pb.ListRepositoriesRequest, context: Context
    ) -> pb.ListRepositoriesResponse:
        # Presence (REQUIRED in the contract) is checked by the server for every request.
        if len(request.organization_ids) > MAX_ORGANIZATION_IDS:
            raise InvalidArgument(
                f"organization_ids lists {len(request.organization_ids)} ids; "
                f"at most {MAX_ORGANIZATION_IDS} per request",
                field="organization_ids",
            )
        org_ids = [
            parse_uuid(f"organization_ids[{i}]", v) for i, v in enumerate(request.organization_ids)
        ]
        page = await service.list_repositories(
            current_session(),
            org_ids,
            page_size=page_size(request.page_size),
            page_token=request.page_token,
        )
        return pb.ListRepositoriesResponse(
            repositories=[mappers.repository(r) for r in page.items],
            next_page_token=page.next_page_token,
        )

    async def BatchUpsertRepositories(
        self, request: pb.BatchUpsertRepositoriesRequest, context: Context
    ) -> pb.BatchUpsertRepositoriesResponse:
        count = len(request.repositories)
        if count > MAX_BATCH:
            raise InvalidArgument(
                f"repositories lists {count}; at most {MAX_BATCH} per request", field="repositories"
            )
        rows = [
            mappers.repository_input(f"repositories[{i}]", r)
            for i, r in enumerate(request.repositories)
        ]
        _check_unique(rows)
        upserted = await service.batch_upsert_repositories(current_session(), rows)
        return pb.BatchUpsertRepositoriesResponse(
            repositories=[mappers.repository(u.row) for u in upserted],
            created=[u.created for u in upserted],
        )

    async def DeleteRepository(
        self, request: pb.DeleteRepositoryRequest, context: Context
    ) -> pb.DeleteRepositoryResponse:
        session = current_session()
        found = await service.get_repository(session, parse_uuid("id", request.id))
        await service.delete_repository(session, found)
        return pb.DeleteRepositoryResponse()

    async def SyncRepository(
        self, request: pb.SyncRepositoryRequest, context: Context
    ) -> pb.SyncRepositoryResponse:
        started = await service.sync_repository(
            current_session(), self.sync, parse_uuid("id", request.id)
        )
        return pb.SyncRepositoryResponse(started=started)

    async def GetRepositorySyncState(
        self, request: pb.GetRepositorySyncStateRequest, context: Context
    ) -> pb.GetRepositorySyncStateResponse:
        repository_id = parse_uuid("repository_id", request.repository_id)
        job = await service.get_sync_state(current_session(), repository_id)
        return pb.GetRepositorySyncStateResponse(state=mappers.sync_state(repository_id, job))

    # --- issues and pull requests ----------------------------------------------------------

    async def GetIssue(self, request: pb.GetIssueRequest, context: Context) -> pb.GetIssueResponse:
        found = await service.get_issue(current_session(), parse_uuid("id", request.id))
        return pb.GetIssueResponse(issue=mappers.issue(found))

    async def ListIssues(
        self, request: pb.ListIssuesRequest, context: Context
    ) -> pb.ListIssuesResponse:
        page = await service.list_issues(
            current_session(),
            parse_uuid("repository_id", request.repository_id),
            state=mappers.state_from_proto(request.state),
            page_size=page_size(request.page_size),
            page_token=request.page_token,
            github_objects=request.include_github_objects,
        )
        return pb.ListIssuesResponse(
            issues=[mappers.listed_issue(i) for i in page.items],
            next_page_token=page.next_page_token,
        )

    async def GetPullRequest(
        self, request: pb.GetPullRequestRequest, context: Context
    ) -> pb.GetPullRequestResponse:
        found = await service.get_pull_request(current_session(), parse_uuid("id", request.id))
        return pb.GetPullRequestResponse(pull_request=mappers.pull_request(found))

    async def ListPullRequests(
        self, request: pb.ListPullRequestsRequest, context: Context
    ) -> pb.ListPullRequestsResponse:
        page = await service.list_pull_requests(
            current_session(),
            parse_uuid("repository_id", request.repository_id),
            state=mappers.state_from_proto(request.state),
            page_size=page_size(request.page_size),
            page_token=request.page_token,
            github_objects=request.include_github_objects,
        )
        return pb.ListPullRequestsResponse(
            pull_requests=[mappers.listed_pull_request(p) for p in page.items],
            next_page_token=page.next_page_token,
        )

    # --- rewards: moved to the reward service (decision 0027) ------------------------------

    async def CreateReward(
        self, request: pb.CreateRewardRequest, context: Context
    ) -> pb.CreateRewardResponse:
        raise MovedToRewardService("CreateReward")

    async def ListRewards(
        self, request: pb.ListRewardsRequest, context: Context
    ) -> pb.ListRewardsResponse:
        raise MovedToRewardService("ListRewards")


def _check_unique(rows: list[dict[str, Any]]) -> None:
    """One statement cannot touch a row twice, and the response is in request order: a
    repeated external id or a name given to two repositories is the caller's mistake."""
    seen_ids: dict[int, int] = {}
    seen_names: dict[tuple[uuid.UUID, str], int] = {}
    for i, row in enumerate(rows):
        if (j := seen_ids.setdefault(row["external_id"], i)) != i:
            raise InvalidArgument(
                f"repositories[{i}] repeats the external_id {row['external_id']} "
                f"of repositories[{j}]",
                field=f"repositories[{i}].external_id",
            )
        if (j := seen_names.setdefault((row["organization_id"], row["name"]), i)) != i:
            raise InvalidArgument(
                f"repositories[{i}] repeats the name {row['name']!r} of repositories[{j}] "
                f"in the same organization",
                field=f"repositories[{i}].name",
            )
