"""Who is calling: the session token from `Authorization: Bearer` or the session cookie.

A replica that has not read the revocation list yet answers every token with 503 (it cannot
tell a signed-out session from a live one); a cookie session past half its idle window gets
a fresh cookie (`REFRESH`, set on the answer by middleware.SecurityHeadersMiddleware).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.responses import Response

from .errors import RETRY_AFTER_SECONDS, ApiError
from .sessions import Session
from .state import Gateway, get_gateway

REFRESH = "polar.session_refresh"  # scope key: (token, session) of the new session cookie

GatewayDep = Annotated[Gateway, Depends(get_gateway)]


class NotSignedIn(ApiError):
    def __init__(self, message: str = "sign in first (session cookie or bearer token)") -> None:
        super().__init__(401, message, headers={"WWW-Authenticate": "Bearer"})


def token_from(request: Request, cookie_name: str) -> str | None:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotSignedIn("the Authorization header must be `Bearer <token>`")
        return token.strip()
    return request.cookies.get(cookie_name) or None


class SessionsUnavailable(ApiError):
    def __init__(self) -> None:
        super().__init__(
            503,
            "sessions cannot be checked yet (the revocation list is loading), try again shortly",
            code="unavailable",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )


def read_session(request: Request, gateway: Gateway) -> Session | None:
    """The caller's session; None when no token was sent; NotSignedIn for a bad one,
    SessionsUnavailable before the revocation list is loaded."""
    token = token_from(request, gateway.settings.session_cookie_name)
    if token is None:
        return None
    session = gateway.tokens.read_session(token)
    if session is None:
        raise NotSignedIn("the session token is invalid or expired; sign in again")
    if not gateway.revocations.loaded.is_set():
        raise SessionsUnavailable()
    if gateway.revocations.is_revoked(session):
        raise NotSignedIn("this session has been signed out; sign in again")
    if "authorization" not in request.headers:
        refreshed = gateway.tokens.refreshed(session)
        if refreshed is not None:
            request.scope[REFRESH] = refreshed
    return session


async def optional_session(request: Request, gateway: GatewayDep) -> Session | None:
    return read_session(request, gateway)


async def require_session(request: Request, gateway: GatewayDep) -> Session:
    session = read_session(request, gateway)
    if session is None:
        raise NotSignedIn()
    return session


CurrentSession = Annotated[Session, Depends(require_session)]
OptionalSession = Annotated[Session | None, Depends(optional_session)]


def session_cookie(gateway: Gateway, token: str) -> tuple[bytes, bytes]:
    """The Set-Cookie header of a session token (HttpOnly; Secure and `__Host-` outside dev
    mode; lives until the session's absolute end, the token inside ends sooner when idle)."""
    s = gateway.settings
    response = Response()
    response.set_cookie(
        s.session_cookie_name,
        token,
        max_age=s.session_ttl_seconds,
        path="/",
        domain=s.cookie_domain or None,
        secure=s.secure_cookies,
        httponly=True,
        samesite=s.cookie_samesite,
    )
    return response.raw_headers[-1]


async def start_session(gateway: Gateway, user_id: str, user_agent: str) -> tuple[str, Session]:
    """A new session for a signed-in user, listed in their sessions."""
    token, session = gateway.tokens.issue_session(user_id)
    try:
        await gateway.sessions.record(session, user_agent or "unknown")
    except Exception as exc:
        raise ApiError(
            503, "sessions cannot be stored now, try again", headers={"Retry-After": "1"}
        ) from exc
    return token, session
