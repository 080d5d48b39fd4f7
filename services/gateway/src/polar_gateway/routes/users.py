"""The signed-in user and their organizations; v1's user-admin routes and password login.

Each route calls the services once, in a function shared by both versions; the v2 handler
maps the answer with `mappers`, the v1 handler with `mappers_v1`.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from urllib.parse import parse_qs

import grpc
import grpc.aio
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from polar.organization.v1 import organization_pb2
from polar.organization.v1 import organization_service_pb2 as org_pb
from polar.repository.v1 import repository_pb2
from polar.repository.v1 import repository_service_pb2 as repo_pb

from .. import mappers, mappers_v1, schemas, schemas_v1
from ..auth import CurrentSession, GatewayDep, NotSignedIn
from ..errors import ApiError
from ..state import Gateway
from ._common import (
    AUTHED,
    V1,
    V2,
    Cursor,
    Limit,
    cached_response,
    encode,
    errors,
    json_response,
    v1_errors,
)

router = APIRouter(prefix=V2, tags=["users"])
router_v1 = APIRouter(prefix=V1, tags=["users"])

PAGE = 100  # the services' largest page


async def _get_user(gateway: Gateway, user_id: str) -> organization_pb2.User:
    response = await gateway.clients.call(
        gateway.clients.org.GetUser, org_pb.GetUserRequest(id=user_id)
    )
    return response.user


async def _me_user(gateway: Gateway, user_id: str) -> organization_pb2.User:
    try:
        return await _get_user(gateway, user_id)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            raise NotSignedIn("the signed-in user no longer exists; sign in again") from exc
        raise


async def _me(gateway: Gateway, user_id: str) -> mappers.JSON:
    return mappers.user(await _me_user(gateway, user_id))


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
    request: Request,
    session: CurrentSession,
    gateway: GatewayDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Response:
    """The user's organizations, each with its repositories. The first page, when it is the
    only one, comes from the read model (readmodel.py) with an ETag (If-None-Match: 304);
    otherwise one call for the organizations and one (paged) call for the repositories of
    all of them, never one per organization."""
    if cursor is None:
        answer = await gateway.read_model.get(
            session.user_id, "v2", lambda: _build_v2(gateway, session.user_id)
        )
        if len(answer.organizations) <= limit:
            return cached_response(request.headers, answer.body, answer.etag)
    orgs = await gateway.clients.call(
        gateway.clients.org.ListOrganizations,
        org_pb.ListOrganizationsRequest(
            member_user_id=session.user_id, page_size=limit, page_token=cursor or ""
        ),
    )
    repos = await _repositories(gateway, session.user_id, list(orgs.organizations))
    items = [
        mappers.organization_with_repositories(o, [mappers.repository(r) for r in repos[o.id]])
        for o in orgs.organizations
    ]
    return json_response(mappers.page(items, orgs.next_page_token))


async def _build_v2(gateway: Gateway, user_id: str) -> tuple[bytes, frozenset[str]]:
    orgs = await all_organizations(gateway, user_id)
    repos = await _repositories(gateway, user_id, orgs)
    items = [
        mappers.organization_with_repositories(o, [mappers.repository(r) for r in repos[o.id]])
        for o in orgs
    ]
    return encode(mappers.page(items, "")), frozenset(o.id for o in orgs)


async def _build_v1(gateway: Gateway, user_id: str) -> tuple[bytes, frozenset[str]]:
    orgs = await all_organizations(gateway, user_id)
    repos = await _repositories(gateway, user_id, orgs)
    items = [
        mappers_v1.organization(o, [mappers_v1.repository(r) for r in repos[o.id]]) for o in orgs
    ]
    return encode(items), frozenset(o.id for o in orgs)


async def _repositories(
    gateway: Gateway, user_id: str, orgs: list[organization_pb2.Organization]
) -> dict[str, list[repository_pb2.Repository]]:
    """The repositories of all these organizations (of the user's), by organization id."""
    clients = gateway.clients
    by_org: dict[str, list[repository_pb2.Repository]] = defaultdict(list)
    ids = [o.id for o in orgs]
    token = ""
    while ids:
        page = await clients.call(
            clients.repo.ListRepositories,
            repo_pb.ListRepositoriesRequest(organization_ids=ids, page_size=PAGE, page_token=token),
        )
        for repository in page.repositories:
            by_org[repository.organization_id].append(repository)
        token = page.next_page_token
        if not token:
            break
    for org_id in ids:
        gateway.memberships.remember(user_id, org_id, True)
    return by_org


async def all_organizations(gateway: Gateway, user_id: str) -> list[organization_pb2.Organization]:
    """Every organization of the user (v1 lists are not paged)."""
    orgs: list[organization_pb2.Organization] = []
    token = ""
    while True:
        page = await gateway.clients.call(
            gateway.clients.org.ListOrganizations,
            org_pb.ListOrganizationsRequest(
                member_user_id=user_id, page_size=PAGE, page_token=token
            ),
        )
        orgs += page.organizations
        token = page.next_page_token
        if not token:
            return orgs


# --- v1 ------------------------------------------------------------------------------------


def _refuse_changes(body: schemas_v1.UserUpdate, user: organization_pb2.User) -> None:
    """What v1's UserUpdate asks that Polar cannot do: users sign in with GitHub (no
    password), their email and profile come from GitHub at each sign-in, and the superuser
    right is an operator's (python -m polar_organization.superuser). `profile` and the
    `is_*` flags the monolith ignored on /users/me are ignored here too."""
    if body.password is not None:
        raise ApiError(400, "UPDATE_USER_INVALID_PASSWORD: users sign in with GitHub")
    if body.email is not None and body.email != mappers_v1.user(user)["email"]:
        raise ApiError(400, "UPDATE_USER_EMAIL_FROM_GITHUB: the email comes from GitHub")


@router_v1.get("/users/me", response_model=schemas_v1.UserRead, responses=v1_errors(401, 503))
async def get_me_v1(session: CurrentSession, gateway: GatewayDep) -> Response:
    return json_response(mappers_v1.user(await _me_user(gateway, session.user_id)))


@router_v1.patch(
    "/users/me", response_model=schemas_v1.UserRead, responses=v1_errors(400, 401, 422, 503)
)
async def update_me_v1(
    body: schemas_v1.UserUpdate, session: CurrentSession, gateway: GatewayDep
) -> Response:
    user = await _me_user(gateway, session.user_id)
    _refuse_changes(body, user)
    return json_response(mappers_v1.user(user))


async def _require_superuser(gateway: Gateway, user_id: str) -> None:
    if not (await _me_user(gateway, user_id)).is_superuser:
        raise ApiError(403, "Forbidden")


@router_v1.get(
    "/users/{id}",
    response_model=schemas_v1.UserRead,
    responses=v1_errors(401, 403, 404, 422, 503),
)
async def get_user_v1(id: uuid.UUID, session: CurrentSession, gateway: GatewayDep) -> Response:
    await _require_superuser(gateway, session.user_id)
    return json_response(mappers_v1.user(await _get_user(gateway, str(id))))


@router_v1.patch(
    "/users/{id}",
    response_model=schemas_v1.UserRead,
    responses=v1_errors(400, 401, 403, 404, 422, 503),
)
async def update_user_v1(
    id: uuid.UUID, body: schemas_v1.UserUpdate, session: CurrentSession, gateway: GatewayDep
) -> Response:
    await _require_superuser(gateway, session.user_id)
    user = await _get_user(gateway, str(id))
    _refuse_changes(body, user)
    for flag in ("is_active", "is_superuser", "is_verified"):
        asked = getattr(body, flag)
        if asked is not None and asked != mappers_v1.user(user)[flag]:
            raise ApiError(400, f"{flag} cannot be changed through the API")
    return json_response(mappers_v1.user(user))


@router_v1.delete(
    "/users/{id}",
    status_code=204,
    responses={204: {"description": "Deleted"}, **v1_errors(401, 403, 404, 422, 503)},
)
async def delete_user_v1(id: uuid.UUID, session: CurrentSession, gateway: GatewayDep) -> Response:
    await _require_superuser(gateway, session.user_id)
    await gateway.clients.call(gateway.clients.org.DeleteUser, org_pb.DeleteUserRequest(id=str(id)))
    return Response(status_code=204)


@router_v1.post(
    "/users/login",
    responses=v1_errors(400, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["username", "password"],
                        "properties": {
                            name: {"type": "string"}
                            for name in (
                                "grant_type",
                                "username",
                                "password",
                                "scope",
                                "client_id",
                                "client_secret",
                            )
                        },
                    }
                }
            },
        }
    },
)
async def login_v1(request: Request) -> Response:
    """Password sign-in of the monolith: Polar's users sign in with GitHub and have no
    password, so every attempt is LOGIN_BAD_CREDENTIALS (after checking the form)."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    missing = [name for name in ("username", "password") if not form.get(name)]
    if missing:
        raise RequestValidationError(
            [
                {"loc": ("body", name), "msg": "Field required", "type": "missing"}
                for name in missing
            ]
        )
    raise ApiError(400, "LOGIN_BAD_CREDENTIALS")


@router_v1.get(
    "/user/organizations",
    response_model=list[schemas_v1.OrganizationRead],
    responses=v1_errors(401, 503),
)
async def list_my_organizations_v1(
    request: Request, session: CurrentSession, gateway: GatewayDep
) -> Response:
    """From the read model (readmodel.py), with an ETag."""
    answer = await gateway.read_model.get(
        session.user_id, "v1", lambda: _build_v1(gateway, session.user_id)
    )
    return cached_response(request.headers, answer.body, answer.etag)
