"""Repositories, their issues and pull requests (the repository service), and rewards on
issues (the reward service).

Every route resolves the repository and requires the caller to be a member of its
organization (unknown, or not the caller's: the same 404), then asks the repository service.
v2 pages with cursors; v1 answers whole lists (the monolith's arrays), read page by page
from the service.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Header, Query
from fastapi.responses import Response
from polar.common.v1 import common_pb2
from polar.repository.v1 import repository_pb2
from polar.repository.v1 import repository_service_pb2 as repo_pb
from polar.reward.v1 import reward_pb2
from polar.reward.v1 import reward_service_pb2 as reward_pb

from .. import errors, mappers, mappers_v1, schemas, schemas_v1
from ..auth import CurrentSession, GatewayDep
from ..schemas import IssueState, Platform
from ..state import Gateway
from ._common import (
    AUTHED,
    V1,
    V2,
    Cursor,
    Limit,
    OrgName,
    RepoName,
    json_response,
    v1_errors,
)

router = APIRouter(prefix=V2, tags=["repositories"])
router_v1 = APIRouter(prefix=V1, tags=["repositories"])
V1_AUTHED = v1_errors(401, 403, 404, 422, 503)
PAGE = 100  # the repository service's largest page

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
    page = await _issues(gateway, repository.id, state, limit, cursor or "")
    return json_response(
        mappers.page([mappers.issue(i) for i in page.issues], page.next_page_token)
    )


async def _issues(
    gateway: Gateway,
    repository_id: str,
    state: IssueState | None,
    limit: int,
    token: str,
    *,
    github_objects: bool = False,  # v1 shows them, v2 does not
) -> repo_pb.ListIssuesResponse:
    return await gateway.clients.call(
        gateway.clients.repo.ListIssues,
        repo_pb.ListIssuesRequest(
            repository_id=repository_id,
            state=mappers.ISSUE_STATE_FILTER[state],
            page_size=limit,
            page_token=token,
            include_github_objects=github_objects,
        ),
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
    page = await _pull_requests(gateway, repository.id, state, limit, cursor or "")
    return json_response(
        mappers.page([mappers.pull_request(p) for p in page.pull_requests], page.next_page_token)
    )


async def _pull_requests(
    gateway: Gateway,
    repository_id: str,
    state: IssueState | None,
    limit: int,
    token: str,
    *,
    github_objects: bool = False,
) -> repo_pb.ListPullRequestsResponse:
    return await gateway.clients.call(
        gateway.clients.repo.ListPullRequests,
        repo_pb.ListPullRequestsRequest(
            repository_id=repository_id,
            state=mappers.ISSUE_STATE_FILTER[state],
            page_size=limit,
            page_token=token,
            include_github_objects=github_objects,
        ),
    )


@router.post("/rewards", status_code=201, response_model=schemas.RewardRead, responses=AUTHED)
async def create_reward(
    body: schemas.RewardCreate,
    session: CurrentSession,
    gateway: GatewayDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=255,
            description="Any string you pick once per reward: a retried request with the same "
            "key (from the same user) returns the reward the first one created.",
        ),
    ] = None,
) -> Response:
    """Put a reward on an issue, backed by the signed-in user."""
    amount = common_pb2.Money(currency=body.amount.currency.upper(), minor_units=body.amount.amount)
    reward = await _create_reward(
        gateway, session.user_id, str(body.issue_id), amount, idempotency_key
    )
    return json_response(mappers.reward(reward), status_code=201)


# Idempotency keys become AIP-155 request ids per user: one user's key never finds another's.
_IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1c8a5e-4d0b-4f43-9c57-0d3f1f1c2a10")


async def _create_reward(
    gateway: Gateway,
    user_id: str,
    issue_id: str,
    amount: common_pb2.Money,
    idempotency_key: str | None = None,
) -> reward_pb2.Reward:
    clients = gateway.clients
    issue = await clients.call(clients.repo.GetIssue, repo_pb.GetIssueRequest(id=issue_id))
    await gateway.memberships.require(user_id, issue.issue.organization_id)
    # One request id per HTTP request (or per idempotency key): the channel's retries of
    # CreateReward (clients.py) can then never create a second reward.
    if idempotency_key is None:
        request_id = uuid.uuid4()
    else:
        request_id = uuid.uuid5(_IDEMPOTENCY_NAMESPACE, f"{user_id}\n{idempotency_key}")
    request = reward_pb.CreateRewardRequest(
        reward=reward_pb2.Reward(issue_id=issue_id, amount=amount, backer_user_id=user_id),
        request_id=str(request_id),
    )
    try:
        response = await clients.call(clients.reward.CreateReward, request)
    except grpc.aio.AioRpcError as exc:
        # The HTTP body is the reward: its fields are named as the body names them.
        raise errors.body_fields(exc, "reward") from None
    return response.reward


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
    page = await _rewards(gateway, repository.id, limit, cursor or "")
    return json_response(
        mappers.page([mappers.reward(r) for r in page.rewards], page.next_page_token)
    )


async def _rewards(
    gateway: Gateway, repository_id: str, limit: int, token: str
) -> reward_pb.ListRewardsResponse:
    return await gateway.clients.call(
        gateway.clients.reward.ListRewards,
        reward_pb.ListRewardsRequest(
            repository_id=repository_id, page_size=limit, page_token=token
        ),
    )


# --- v1: whole lists, the monolith's shapes ------------------------------------------------


async def _all(fetch: Callable[[str], Awaitable[Any]], field: str) -> list[Any]:
    """Every item of a paged list call (`fetch(token)`)."""
    items: list[Any] = []
    token = ""
    while True:
        page = await fetch(token)
        items += getattr(page, field)
        token = page.next_page_token
        if not token:
            return items


@router_v1.get(
    "/issues/{platform}/{organization_name}/{name}",
    response_model=list[schemas_v1.IssueRead],
    responses=V1_AUTHED,
)
async def list_issues_v1(
    platform: Platform,
    organization_name: str,
    name: str,
    session: CurrentSession,
    gateway: GatewayDep,
) -> Response:
    repository = await _repository(gateway, session.user_id, organization_name, name)
    issues = await _all(
        lambda t: _issues(gateway, repository.id, None, PAGE, t, github_objects=True), "issues"
    )
    return json_response([mappers_v1.issue(i) for i in issues])


@router_v1.get(
    "/pull_requests/{platform}/{organization_name}/{name}",
    response_model=list[schemas_v1.PullRequestRead],
    responses=V1_AUTHED,
)
async def list_pull_requests_v1(
    platform: Platform,
    organization_name: str,
    name: str,
    session: CurrentSession,
    gateway: GatewayDep,
) -> Response:
    repository = await _repository(gateway, session.user_id, organization_name, name)
    prs = await _all(
        lambda t: _pull_requests(gateway, repository.id, None, PAGE, t, github_objects=True),
        "pull_requests",
    )
    return json_response([mappers_v1.pull_request(p) for p in prs])


@router_v1.get(
    "/rewards/{platform}/{organization_name}/{name}",
    response_model=list[schemas_v1.RewardRead],
    responses=V1_AUTHED,
)
async def list_rewards_v1(
    platform: Platform,
    organization_name: str,
    name: str,
    session: CurrentSession,
    gateway: GatewayDep,
) -> Response:
    repository = await _repository(gateway, session.user_id, organization_name, name)
    rewards = await _all(lambda t: _rewards(gateway, repository.id, PAGE, t), "rewards")
    return json_response([mappers_v1.reward(r) for r in rewards if mappers_v1.shown(r)])


@router_v1.post(
    "/rewards",
    response_model=schemas_v1.RewardRead,
    responses=v1_errors(400, 401, 403, 404, 422, 503),
)
async def create_reward_v1(
    body: schemas_v1.RewardCreate, session: CurrentSession, gateway: GatewayDep
) -> Response:
    """A bare v1 amount is a whole number of US cents (docs/decisions/0009)."""
    amount = common_pb2.Money(currency=mappers_v1.USD, minor_units=int(body.amount))
    reward = await _create_reward(gateway, session.user_id, str(body.issue_id), amount)
    return json_response(mappers_v1.reward(reward))
