"""The signed-in user and their organizations."""

from __future__ import annotations

from collections import defaultdict

import grpc
import grpc.aio
from fastapi import APIRouter
from fastapi.responses import Response
from polar.organization.v1 import organization_service_pb2 as org_pb
from polar.repository.v1 import repository_service_pb2 as repo_pb

from .. import mappers, schemas
from ..auth import CurrentSession, GatewayDep, NotSignedIn
from ..state import Gateway
from ._common import API_PREFIX, AUTHED, Cursor, Limit, errors, json_response

router = APIRouter(prefix=API_PREFIX, tags=["users"])

REPOSITORY_PAGE = 100  # the repository service's largest page


async def _me(gateway: Gateway, user_id: str) -> mappers.JSON:
    try:
        response = await gateway.clients.call(
            gateway.clients.org.GetUser, org_pb.GetUserRequest(id=user_id)
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            raise NotSignedIn("the signed-in user no longer exists; sign in again") from exc
        raise
    return mappers.user(response.user)


@router.get("/users/me", response_model=schemas.UserRead, responses=errors(401, 503))
async def get_me(session: CurrentSession, gateway: GatewayDep) -> Response:
    return json_response(await _me(gateway, session.user_id))


@router.patch("/users/me", response_model=schemas.UserRead, responses=errors(401, 422, 503))
async def update_me(
    body: schemas.UserUpdate, session: CurrentSession, gateway: GatewayDep
) -> Response:
    # See UserUpdate: no field is writable yet, so this only validates and answers the user.
    return json_response(await _me(gateway, session.user_id))


@router.get(
    "/user/organizations",
    response_model=schemas.Page[schemas.OrganizationWithRepositories],
    responses=AUTHED,
)
async def list_my_organizations(
    session: CurrentSession, gateway: GatewayDep, limit: Limit = 50, cursor: Cursor = None
) -> Response:
    """The user's organizations, each with its repositories: one call for the organizations
    and one (paged) call for the repositories of all of them, never one per organization."""
    clients = gateway.clients
    orgs = await clients.call(
        clients.org.ListOrganizations,
        org_pb.ListOrganizationsRequest(
            member_user_id=session.user_id, page_size=limit, page_token=cursor or ""
        ),
    )
    by_org: dict[str, list[mappers.JSON]] = defaultdict(list)
    ids = [o.id for o in orgs.organizations]
    token = ""
    while ids:
        page = await clients.call(
            clients.repo.ListRepositories,
            repo_pb.ListRepositoriesRequest(
                organization_ids=ids, page_size=REPOSITORY_PAGE, page_token=token
            ),
        )
        for repository in page.repositories:
            by_org[repository.organization_id].append(mappers.repository(repository))
        token = page.next_page_token
        if not token:
            break
    for org_id in ids:
        gateway.memberships.remember(session.user_id, org_id, True)
    items = [mappers.organization_with_repositories(o, by_org[o.id]) for o in orgs.organizations]
    return json_response(mappers.page(items, orgs.next_page_token))
