"""Organizations and installing the GitHub App."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.responses import Response
from polar.common.v1 import common_pb2
from polar.organization.v1 import organization_pb2
from polar.organization.v1 import organization_service_pb2 as org_pb

from .. import mappers, mappers_v1, schemas, schemas_v1
from ..auth import CurrentSession, GatewayDep
from ..state import Gateway
from ._common import AUTHED, V1, V2, errors, json_response, v1_errors

router = APIRouter(prefix=V2, tags=["organizations"])
router_v1 = APIRouter(prefix=V1, tags=["organizations"])


@router.get("/organizations/{id}", response_model=schemas.OrganizationRead, responses=AUTHED)
async def get_organization(id: uuid.UUID, session: CurrentSession, gateway: GatewayDep) -> Response:
    await gateway.memberships.require(session.user_id, str(id))
    response = await gateway.clients.call(
        gateway.clients.org.GetOrganization, org_pb.GetOrganizationRequest(id=str(id))
    )
    return json_response(mappers.organization(response.organization))


@router.post(
    "/integrations/github/installations",
    response_model=schemas.OrganizationRead,
    responses=errors(400, 401, 404, 422, 503),
)
async def install(
    body: schemas.InstallationCreate, session: CurrentSession, gateway: GatewayDep
) -> Response:
    """Claim a GitHub App installation: the organization service checks with GitHub that the
    signed-in user can see it, mirrors the account and makes the user a member. GitHub
    unreachable: 503 with Retry-After."""
    org = await _install(gateway, session.user_id, body.external_id)
    return json_response(mappers.organization(org))


async def _install(
    gateway: Gateway, user_id: str, installation_id: int
) -> organization_pb2.Organization:
    response = await gateway.clients.call(
        gateway.clients.org.InstallOrganization,
        org_pb.InstallOrganizationRequest(
            user_id=user_id, platform=common_pb2.PLATFORM_GITHUB, installation_id=installation_id
        ),
    )
    gateway.memberships.remember(user_id, response.organization.id, True)
    return response.organization


@router_v1.post(
    "/integrations/github/installations",
    response_model=schemas_v1.OrganizationRead,
    responses=v1_errors(400, 401, 404, 422, 503),
)
async def install_v1(
    body: schemas_v1.InstallationCreate, session: CurrentSession, gateway: GatewayDep
) -> Response:
    org = await _install(gateway, session.user_id, body.external_id)
    return json_response(mappers_v1.organization(org))
