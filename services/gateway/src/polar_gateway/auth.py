"""Who is calling: the session token from `Authorization: Bearer` or the session cookie."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .errors import ApiError
from .sessions import Session
from .state import Gateway, get_gateway

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


def read_session(request: Request, gateway: Gateway) -> Session | None:
    """The caller's session; None when no token was sent; NotSignedIn for a bad one."""
    token = token_from(request, gateway.settings.session_cookie_name)
    if token is None:
        return None
    session = gateway.tokens.read_session(token)
    if session is None:
        raise NotSignedIn("the session token is invalid or expired; sign in again")
    if gateway.revocations.is_revoked(session):
        raise NotSignedIn("this session has been signed out; sign in again")
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
