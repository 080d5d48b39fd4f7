"""Sign in with GitHub (OAuth web flow) and sign out.

1. GET /integrations/github/authorize: a random `state` goes into a signed, short-lived,
   HttpOnly cookie and to GitHub's authorize URL.
2. GET /integrations/github/callback: `state` must equal the cookie's (constant-time); the
   code is exchanged at the token URL, the profile (and verified primary email) fetched,
   the user upserted by the organization service, and a session token set as the session
   cookie; the browser is sent back to `return_to`.
3. POST /auth/logout: revokes the session (bearer or cookie) and clears the cookie.

/api/v1 keeps the monolith's flow, which its web app drives with XHR: `authorize` answers
`{"authorization_url"}` whose `state` is itself a signed, 10-minute token (no cookie: the
monolith's state was a signed JWT too), without a redirect_uri so GitHub returns to the
App's configured callback URL (the web app's page); the page passes code and state to
`callback`, which sets the session cookie and answers `{"action": "login", "success": true}`.
`POST /users/logout` answers `{"action": "logout", "success": true}`.
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Annotated, Any
from urllib.parse import urlencode

import httpx
import structlog
from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from google.protobuf.struct_pb2 import Struct
from polar.organization.v1 import organization_service_pb2 as org_pb

from .. import schemas_v1
from ..auth import (
    CurrentSession,
    GatewayDep,
    NotSignedIn,
    read_session,
    session_cookie,
    start_session,
)
from ..errors import ApiError
from ..schemas import ErrorResponse
from ..sessions import OAUTH_STATE
from ..state import Gateway
from ._common import V1, V2, json_response, v1_errors

log = structlog.get_logger(__name__)

router = APIRouter(prefix=V2, tags=["auth"])
router_v1 = APIRouter(prefix=V1, tags=["auth"])

STATE_COOKIE = "polar_oauth_state"
STATE_TTL = 600
STATE_COOKIE_PATH = V2 + "/integrations/github"
CALLBACK_PATH = V2 + "/integrations/github/callback"


class SignInFailed(ApiError):
    def __init__(self, message: str, *, code: str = "sign_in_failed", status: int = 401) -> None:
        super().__init__(status, message, code=code)


def _safe_return_to(value: str | None) -> str:
    # Only paths of our own site: never an open redirect to another host.
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


@router.get(
    "/integrations/github/authorize",
    status_code=307,
    responses={307: {"description": "Redirect to GitHub"}, 503: {"model": ErrorResponse}},
)
async def authorize(
    gateway: GatewayDep,
    return_to: Annotated[str | None, Query(max_length=2048)] = None,
) -> Response:
    s = gateway.settings
    _require_configured(gateway)
    state = secrets.token_urlsafe(24)
    signed = gateway.tokens.sign(
        {"typ": OAUTH_STATE, "state": state, "return_to": _safe_return_to(return_to)}, STATE_TTL
    )
    query = urlencode(
        {
            "client_id": s.github_client_id,
            "redirect_uri": s.public_url.rstrip("/") + CALLBACK_PATH,
            "scope": s.github_oauth_scope,
            "state": state,
            "allow_signup": "true",
        }
    )
    response = RedirectResponse(f"{s.github_authorize_url}?{query}", status_code=307)
    # SameSite=lax at most: the cookie must come back on GitHub's top-level redirect.
    response.set_cookie(
        STATE_COOKIE,
        signed,
        max_age=STATE_TTL,
        path=STATE_COOKIE_PATH,
        httponly=True,
        secure=s.secure_cookies,
        samesite="lax",
        domain=s.cookie_domain or None,
    )
    return response


def _check_state(gateway: Gateway, request: Request, state: str | None) -> str:
    """The `return_to` saved with the state; SignInFailed when state does not match."""
    cookie = request.cookies.get(STATE_COOKIE)
    saved = gateway.tokens.verify(cookie, OAUTH_STATE) if cookie else None
    if not state or saved is None:
        raise SignInFailed(
            "the sign-in attempt is unknown or expired; start again",
            code="invalid_state",
            status=400,
        )
    if not hmac.compare_digest(str(saved.get("state", "")).encode(), state.encode()):
        raise SignInFailed("the sign-in state does not match", code="invalid_state", status=400)
    return _safe_return_to(saved.get("return_to"))


async def _github_json(gateway: Gateway, method: str, url: str, **kw: Any) -> tuple[int, Any]:
    try:
        response = await gateway.github.request(method, url, **kw)
    except httpx.HTTPError as exc:
        log.warning("github unreachable", url=url, error=repr(exc))
        raise ApiError(503, "GitHub is unreachable, try again shortly") from exc
    if response.status_code >= 500:
        raise ApiError(503, f"GitHub answered {response.status_code}, try again shortly")
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, None


def _require_configured(gateway: Gateway) -> None:
    if not gateway.settings.github_client_id:
        raise ApiError(503, "GitHub sign-in is not configured (POLAR_GITHUB_CLIENT_ID)")


async def _exchange_code(
    gateway: Gateway, code: str, *, redirect_uri: str | None, code_verifier: str | None = None
) -> dict[str, Any]:
    s = gateway.settings
    form = {
        "client_id": s.github_client_id,
        "client_secret": s.github_client_secret.get_secret_value(),
        "code": code,
    }
    if redirect_uri:
        form["redirect_uri"] = redirect_uri
    if code_verifier:
        form["code_verifier"] = code_verifier
    status, body = await _github_json(
        gateway, "POST", s.github_token_url, data=form, headers={"Accept": "application/json"}
    )
    # GitHub answers 200 with {"error": ...} for a bad or expired code.
    if status != 200 or not isinstance(body, dict) or not body.get("access_token"):
        reason = (
            body.get("error_description") or body.get("error") if isinstance(body, dict) else None
        )
        raise SignInFailed(f"GitHub refused the sign-in code: {reason or status}")
    return body


async def _profile(gateway: Gateway, token: str) -> tuple[dict[str, Any], str, bool]:
    """The GitHub user, and their email with whether GitHub says it is verified."""
    api = gateway.settings.github_api_url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}
    status, user = await _github_json(gateway, "GET", f"{api}/user", headers=headers)
    if status != 200 or not isinstance(user, dict) or "id" not in user or "login" not in user:
        raise SignInFailed(f"could not read the GitHub profile ({status})")
    email, verified = str(user.get("email") or ""), False
    # The primary verified address (needs user:email); without it the public one, unverified.
    status, emails = await _github_json(gateway, "GET", f"{api}/user/emails", headers=headers)
    if status == 200 and isinstance(emails, list):
        for item in emails:
            if isinstance(item, dict) and item.get("primary") and item.get("email"):
                email, verified = str(item["email"]), bool(item.get("verified"))
    return user, email, verified


@router.get(
    "/integrations/github/callback",
    status_code=303,
    responses={
        303: {"description": "Signed in: session cookie set, redirect to return_to"},
        400: {"model": ErrorResponse},
        401: {"model": ErrorResponse},
        409: {"model": ErrorResponse},
        503: {"model": ErrorResponse},
    },
)
async def callback(
    request: Request,
    gateway: GatewayDep,
    code: Annotated[str | None, Query(max_length=512)] = None,
    state: Annotated[str | None, Query(max_length=512)] = None,
    error: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    return_to = _check_state(gateway, request, state)
    if error:
        raise SignInFailed(f"GitHub sign-in was not completed: {error}", code="access_denied")
    if not code:
        raise SignInFailed("the callback has no code", code="bad_request", status=400)
    redirect_uri = gateway.settings.public_url.rstrip("/") + CALLBACK_PATH
    session_token = await _sign_in(
        gateway, code, redirect_uri=redirect_uri, user_agent=request.headers.get("user-agent", "")
    )
    target = (gateway.settings.frontend_url.rstrip("/") or "") + return_to
    response = RedirectResponse(target, status_code=303)
    _set_session_cookie(gateway, response, session_token)
    response.delete_cookie(STATE_COOKIE, path=STATE_COOKIE_PATH)
    return response


async def _sign_in(
    gateway: Gateway,
    code: str,
    *,
    redirect_uri: str | None,
    user_agent: str,
    code_verifier: str | None = None,
) -> str:
    """Exchange the code, read the profile, upsert the user: a new session token."""
    grant = await _exchange_code(
        gateway, code, redirect_uri=redirect_uri, code_verifier=code_verifier
    )
    token = str(grant["access_token"])
    user, email, verified = await _profile(gateway, token)
    expires_in = grant.get("expires_in")
    upserted = await gateway.clients.call(
        gateway.clients.org.UpsertUserFromGitHub,
        org_pb.UpsertUserFromGitHubRequest(
            github_user_id=int(user["id"]),
            login=str(user["login"]),
            email=email,
            email_verified=verified,
            avatar_url=str(user.get("avatar_url") or ""),
            access_token=token,
            access_token_expires_at=int(time.time()) + int(expires_in) if expires_in else 0,
            refresh_token=str(grant.get("refresh_token") or ""),
            profile=_public_profile(user),
        ),
    )
    session_token, session = await start_session(gateway, upserted.user.id, user_agent)
    log.info("signed in", user_id=session.user_id, created=upserted.created)
    return session_token


# GitHub's public profile fields kept as the user's profile (v1's UserRead.profile).
PROFILE_FIELDS = (
    "login",
    "id",
    "avatar_url",
    "html_url",
    "type",
    "site_admin",
    "name",
    "company",
    "blog",
    "location",
    "bio",
    "twitter_username",
)


def _public_profile(user: dict[str, Any]) -> Struct:
    profile = Struct()
    profile.update(
        {
            k: user[k]
            for k in PROFILE_FIELDS
            if k in user
            and (user[k] is None or isinstance(user[k], bool | int | str))
            and len(str(user[k])) <= 1024
        }
    )
    return profile


def _set_session_cookie(gateway: Gateway, response: Response, session_token: str) -> None:
    response.raw_headers.append(session_cookie(gateway, session_token))


@router.post(
    "/auth/logout",
    status_code=204,
    responses={204: {"description": "Signed out"}, 503: {"model": ErrorResponse}},
)
async def logout(request: Request, gateway: GatewayDep) -> Response:
    response = Response(status_code=204)
    await _end_session(request, gateway, response)
    return response


async def _end_session(request: Request, gateway: Gateway, response: Response) -> None:
    """Clear the cookie and revoke the caller's session (503 when it cannot be stored)."""
    s = gateway.settings
    response.delete_cookie(
        s.session_cookie_name,
        path="/",
        domain=s.cookie_domain or None,
        secure=s.secure_cookies,
        httponly=True,
        samesite=s.cookie_samesite,
    )
    try:
        session = read_session(request, gateway)
    except NotSignedIn:
        return  # already invalid: nothing to revoke
    if session is not None:
        try:
            gateway.bus.jetstream()
            await gateway.revocations.revoke(session)
        except Exception as exc:
            log.warning("could not store the revocation", error=repr(exc))
            raise ApiError(
                503, "could not sign out everywhere, try again", headers={"Retry-After": "1"}
            ) from exc


# --- v1 ------------------------------------------------------------------------------------

V1_STATE = "v1"


@router_v1.get(
    "/integrations/github/authorize",
    response_model=schemas_v1.OAuth2AuthorizeResponse,
    responses=v1_errors(422, 503),
)
async def authorize_v1(
    gateway: GatewayDep,
    scopes: Annotated[list[str] | None, Query(max_length=64)] = None,
) -> Response:
    s = gateway.settings
    _require_configured(gateway)
    state = gateway.tokens.sign(
        {"typ": OAUTH_STATE, "api": V1_STATE, "nonce": secrets.token_urlsafe(16)}, STATE_TTL
    )
    query = urlencode(
        {
            "client_id": s.github_client_id,
            "scope": " ".join(scopes) if scopes else s.github_oauth_scope,
            "state": state,
            "allow_signup": "true",
        }
    )
    return json_response({"authorization_url": f"{s.github_authorize_url}?{query}"})


@router_v1.get(
    "/integrations/github/callback",
    response_model=schemas_v1.ActionResponse,
    responses=v1_errors(400, 401, 409, 422, 503),
)
async def callback_v1(
    request: Request,
    gateway: GatewayDep,
    code: Annotated[str | None, Query(max_length=512)] = None,
    code_verifier: Annotated[str | None, Query(max_length=512)] = None,
    state: Annotated[str | None, Query(max_length=2048)] = None,
    error: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    if error:
        raise SignInFailed(f"GitHub sign-in was not completed: {error}", status=400)
    claims = gateway.tokens.verify(state, OAUTH_STATE) if state else None
    if claims is None or claims.get("api") != V1_STATE:
        raise SignInFailed("the sign-in state is unknown or expired; start again", status=400)
    if not code:
        raise SignInFailed("the callback has no code", status=400)
    _require_configured(gateway)
    session_token = await _sign_in(
        gateway,
        code,
        redirect_uri=None,
        user_agent=request.headers.get("user-agent", ""),
        code_verifier=code_verifier,
    )
    response = json_response({"action": "login", "success": True})
    _set_session_cookie(gateway, response, session_token)
    return response


@router_v1.post(
    "/users/logout", response_model=schemas_v1.ActionResponse, responses=v1_errors(401, 503)
)
async def logout_v1(request: Request, session: CurrentSession, gateway: GatewayDep) -> Response:
    response = json_response({"action": "logout", "success": True})
    await _end_session(request, gateway, response)
    return response
