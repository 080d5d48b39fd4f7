"""Organizations and installing the GitHub App."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.responses import Response
from polar.common.v1 import common_pb2
from polar.organization.v1 import organization_service_pb2 as org_pb

from .. import mappers, schemas
from ..auth import CurrentSession, GatewayDep
from ._common import API_PREFIX, AUTHED, errors, json_response

router = APIRouter(prefix=API_PREFIX, tags=["organizations"])


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
    signed-in user can see it, mirrors the account and makes the user a member."""
    response = await gateway.clients.call(
        gateway.clients.org.InstallOrganization,
        org_pb.InstallOrganizationRequest(
            user_id=session.user_id,
            platform=common_pb2.PLATFORM_GITHUB,
            installation_id=body.external_id,
        ),
    )
    gateway.memberships.remember(session.user_id, response.organization.id, True)
    return json_response(mappers.organization(response.organization))
