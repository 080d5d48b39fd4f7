"""Repositories, their issues and pull requests, and rewards on issues.

Every route resolves the repository and requires the caller to be a member of its
organization (unknown, or not the caller's: the same 404), then asks the repository service.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response
from polar.common.v1 import common_pb2
from polar.repository.v1 import repository_pb2
from polar.repository.v1 import repository_service_pb2 as repo_pb

from .. import mappers, schemas
from ..auth import CurrentSession, GatewayDep
from ..schemas import IssueState, Platform
from ..state import Gateway
from ._common import API_PREFIX, AUTHED, Cursor, Limit, OrgName, RepoName, json_response

router = APIRouter(prefix=API_PREFIX, tags=["repositories"])

StateFilter = Annotated[IssueState | None, Query(description="Only open or only closed.")]


async def _repository(
    gateway: Gateway, user_id: str, org: str, repo: str
) -> repository_pb2.Repository:
    async def lookup() -> repository_pb2.Repository:
        response = await gateway.clients.call(
            gateway.clients.repo.LookupRepository,
            repo_pb.LookupRepositoryRequest(
                platform=common_pb2.PLATFORM_GITHUB, organization_name=org, repository_name=repo
            ),
        )
        return response.repository

    return await gateway.memberships.visible_repository(user_id, lookup())


@router.get("/repositories/{id}", response_model=schemas.RepositoryRead, responses=AUTHED)
async def get_repository(id: uuid.UUID, session: CurrentSession, gateway: GatewayDep) -> Response:
    async def get() -> repository_pb2.Repository:
        response = await gateway.clients.call(
            gateway.clients.repo.GetRepository, repo_pb.GetRepositoryRequest(id=str(id))
        )
        return response.repository

    repository = await gateway.memberships.visible_repository(session.user_id, get())
    return json_response(mappers.repository(repository))


@router.get(
    "/issues/{platform}/{org}/{repo}",
    response_model=schemas.Page[schemas.IssueRead],
    responses=AUTHED,
)
async def list_issues(
    platform: Platform,
    org: OrgName,
    repo: RepoName,
    session: CurrentSession,
    gateway: GatewayDep,
    state: StateFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Response:
    repository = await _repository(gateway, session.user_id, org, repo)
    page = await gateway.clients.call(
        gateway.clients.repo.ListIssues,
        repo_pb.ListIssuesRequest(
            repository_id=repository.id,
            state=mappers.ISSUE_STATE_FILTER[state],
            page_size=limit,
            page_token=cursor or "",
        ),
    )
    return json_response(
        mappers.page([mappers.issue(i) for i in page.issues], page.next_page_token)
    )


@router.get(
    "/pull_requests/{platform}/{org}/{repo}",
    response_model=schemas.Page[schemas.PullRequestRead],
    responses=AUTHED,
)
async def list_pull_requests(
    platform: Platform,
    org: OrgName,
    repo: RepoName,
    session: CurrentSession,
    gateway: GatewayDep,
    state: StateFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Response:
    repository = await _repository(gateway, session.user_id, org, repo)
    page = await gateway.clients.call(
        gateway.clients.repo.ListPullRequests,
        repo_pb.ListPullRequestsRequest(
            repository_id=repository.id,
            state=mappers.ISSUE_STATE_FILTER[state],
            page_size=limit,
            page_token=cursor or "",
        ),
    )
    return json_response(
        mappers.page([mappers.pull_request(p) for p in page.pull_requests], page.next_page_token)
    )


@router.post("/rewards", status_code=201, response_model=schemas.RewardRead, responses=AUTHED)
async def create_reward(
    body: schemas.RewardCreate, session: CurrentSession, gateway: GatewayDep
) -> Response:
    """Put a reward on an issue, backed by the signed-in user."""
    clients = gateway.clients
    issue = await clients.call(
        clients.repo.GetIssue, repo_pb.GetIssueRequest(id=str(body.issue_id))
    )
    await gateway.memberships.require(session.user_id, issue.issue.organization_id)
    response = await clients.call(
        clients.repo.CreateReward,
        repo_pb.CreateRewardRequest(
            issue_id=str(body.issue_id),
            amount=common_pb2.Money(
                currency=body.amount.currency.upper(), minor_units=body.amount.amount
            ),
            backer_user_id=session.user_id,
        ),
    )
    return json_response(mappers.reward(response.reward), status_code=201)


@router.get(
    "/rewards/{platform}/{org}/{repo}",
    response_model=schemas.Page[schemas.RewardRead],
    responses=AUTHED,
)
async def list_rewards(
    platform: Platform,
    org: OrgName,
    repo: RepoName,
    session: CurrentSession,
    gateway: GatewayDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Response:
    repository = await _repository(gateway, session.user_id, org, repo)
    page = await gateway.clients.call(
        gateway.clients.repo.ListRewards,
        repo_pb.ListRewardsRequest(
            repository_id=repository.id, page_size=limit, page_token=cursor or ""
        ),
    )
    return json_response(
        mappers.page([mappers.reward(r) for r in page.rewards], page.next_page_token)
    )
