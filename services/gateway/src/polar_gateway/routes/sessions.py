"""The signed-in user's sessions: list them, end one (another browser, a lost laptop).

GET /api/v2/auth/sessions lists the sessions that have not ended (signed out, idle past
POLAR_SESSION_IDLE_SECONDS or past POLAR_SESSION_TTL_SECONDS), newest first, the caller's own
marked `current`. DELETE /api/v2/auth/sessions/{id} ends one of them like a logout: every
replica refuses its token at once and its open streams end. Another user's session id is a
404, like an unknown one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from ..auth import CurrentSession, GatewayDep
from ..bus import NatsUnavailable
from ..errors import ApiError
from ..schemas import Schema
from ._common import errors, json_response

router = APIRouter(prefix="/api/v2/auth", tags=["auth"])

SessionId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class SessionRead(Schema):
    id: str
    current: bool
    signed_in_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    user_agent: str


class SessionList(Schema):
    items: list[SessionRead]


def _time(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


@router.get("/sessions", response_model=SessionList, responses=errors(401, 503))
async def list_sessions(session: CurrentSession, gateway: GatewayDep) -> Response:
    try:
        found = await gateway.sessions.list(session.user_id, current=session.session_id)
    except Exception as exc:
        raise NatsUnavailable("the session list is unavailable, try again shortly") from exc
    items = [
        SessionRead(
            id=s.id,
            current=s.current,
            signed_in_at=_time(s.signed_in_at),
            last_seen_at=_time(s.last_seen_at),
            expires_at=_time(s.expires_at),
            user_agent=s.user_agent,
        )
        for s in found
    ]
    return json_response(SessionList(items=items))


@router.delete(
    "/sessions/{id}",
    status_code=204,
    responses={204: {"description": "Ended"}, **errors(401, 404, 503)},
)
async def end_session(id: SessionId, session: CurrentSession, gateway: GatewayDep) -> Response:
    try:
        ended = await gateway.sessions.end(session.user_id, id)
    except Exception as exc:
        raise NatsUnavailable("the session could not be ended, try again shortly") from exc
    if not ended:
        raise ApiError(404, "no such session of yours")
    return Response(status_code=204)
