"""Session tokens: signed (HS256 JWT), stateless to check, revocable at logout.

A token carries the user id (`sub`), a random session id (`sid`), when the user signed in
(`auth`) and its expiry (`exp`): the idle deadline, `session_idle_seconds` after its issue,
never past `auth` + `session_ttl_seconds` (the absolute lifetime). A cookie session used
after half its idle window gets a fresh token (same sid) in a new cookie: activity extends
it, idleness ends it. A bearer token is not refreshed (it ends at its own `exp`).

Logout revokes the session id in a JetStream key-value bucket that every gateway replica
watches into memory, so checking a token never costs a network round trip. Until a replica
has read the whole bucket it cannot tell a revoked token from a live one: it refuses every
token with 503 (and /readyz says not ready) — a restart, or NATS down at start, never lets a
signed-out session back in. The bucket keeps entries for the absolute lifetime.

A second bucket lists each user's sessions (`<user id>.<sid>`: when signed in, last refresh,
client) for GET/DELETE /api/v2/auth/sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue
from polar_kit.nats import stream_prefix

from .settings import GatewaySettings

log = structlog.get_logger(__name__)

_GONE = (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError)

REVOKED_BUCKET = "POLAR_GATEWAY_REVOKED_SESSIONS"
SESSIONS_BUCKET = "POLAR_GATEWAY_SESSIONS"


def buckets(settings: GatewaySettings) -> list[str]:
    """The gateway's key-value buckets (for tests to delete)."""
    return [stream_prefix(settings.nats_prefix) + b for b in (REVOKED_BUCKET, SESSIONS_BUCKET)]


ALGORITHM = "HS256"
ISSUER = "polar-gateway"
SESSION = "session"
OAUTH_STATE = "oauth_state"


@dataclass(frozen=True, slots=True)
class Session:
    user_id: str
    session_id: str
    expires_at: int  # this token's end (idle deadline, or the absolute one)
    auth_time: int = 0  # when the user signed in
    issued_at: int = 0

    def ends_at(self, ttl: int) -> int:
        """The absolute end of the session."""
        return self.auth_time + ttl


class TokenSigner:
    def __init__(self, settings: GatewaySettings) -> None:
        self._key = settings.session_secret.get_secret_value()
        self.ttl = settings.session_ttl_seconds
        self.idle = settings.session_idle_seconds

    def sign(self, claims: dict[str, Any], ttl: float) -> str:
        now = int(time.time())
        return jwt.encode(
            {**claims, "iss": ISSUER, "iat": now, "exp": now + int(ttl)},
            self._key,
            algorithm=ALGORITHM,
        )

    def verify(self, token: str, typ: str) -> dict[str, Any] | None:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "iss"]},
            )
        except jwt.PyJWTError:
            return None
        return claims if claims.get("typ") == typ else None

    def issue_session(self, user_id: str, ttl: float | None = None) -> tuple[str, Session]:
        """A new session; `ttl` (the token command) replaces the idle window."""
        now = int(time.time())
        return self._issue(user_id, secrets.token_urlsafe(16), now, int(ttl or self.idle), now)

    def _issue(
        self, user_id: str, session_id: str, auth_time: int, ttl: int, now: int
    ) -> tuple[str, Session]:
        ttl = max(0, min(ttl, auth_time + self.ttl - now))
        claims = {"typ": SESSION, "sub": user_id, "sid": session_id, "auth": auth_time}
        token = self.sign(claims, ttl)
        return token, Session(user_id, session_id, now + ttl, auth_time, now)

    def refreshed(self, session: Session) -> tuple[str, Session] | None:
        """A fresh token for a session past half its idle window (None: not yet, or the
        absolute lifetime leaves nothing to extend)."""
        now = int(time.time())
        if session.expires_at - now > self.idle / 2:
            return None
        if session.expires_at >= session.auth_time + self.ttl:
            return None
        return self._issue(session.user_id, session.session_id, session.auth_time, self.idle, now)

    def read_session(self, token: str) -> Session | None:
        claims = self.verify(token, SESSION)
        if claims is None:
            return None
        sub, sid = claims.get("sub"), claims.get("sid")
        if not isinstance(sub, str) or not isinstance(sid, str):
            return None
        try:
            uuid.UUID(sub)
        except ValueError:
            return None
        issued = int(claims["iat"])
        # A token from before `auth` existed counts from its issue. The absolute lifetime is
        # enforced here too, so lowering POLAR_SESSION_TTL_SECONDS shortens live sessions.
        auth = claims.get("auth")
        auth_time = auth if isinstance(auth, int) else issued
        if time.time() >= auth_time + self.ttl:
            return None
        return Session(sub, sid, int(claims["exp"]), auth_time, issued)


async def open_bucket(js: JetStreamContext, name: str, ttl: int, replicas: int) -> KeyValue:
    try:
        return await js.key_value(name)
    except nats.js.errors.BucketNotFoundError:
        return await js.create_key_value(
            KeyValueConfig(
                bucket=name, history=1, ttl=float(ttl), storage=StorageType.FILE, replicas=replicas
            )
        )


class Revocations:
    """Revoked session ids: written to a KV bucket, read from memory (kept by a watcher)."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.bucket = stream_prefix(settings.nats_prefix) + REVOKED_BUCKET
        self.ttl = settings.session_ttl_seconds
        self.replicas = settings.nats_replicas
        self._revoked: dict[str, int] = {}  # session id -> token expiry (epoch seconds)
        self._kv: KeyValue | None = None
        self._task: asyncio.Task[None] | None = None
        # Set once the whole bucket has been read: before that no token can be trusted.
        self.loaded = asyncio.Event()
        self.listeners: list[Callable[[str], None]] = []  # called with each revoked sid

    def is_revoked(self, session: Session) -> bool:
        return self.is_revoked_id(session.session_id)

    def is_revoked_id(self, session_id: str) -> bool:
        return session_id in self._revoked

    def _remember(self, session_id: str, expires_at: int) -> None:
        if session_id not in self._revoked:
            for listener in self.listeners:
                listener(session_id)
        self._revoked[session_id] = expires_at
        if len(self._revoked) % 1024 == 0:  # forget what expired, now and then
            now = time.time()
            for sid in [s for s, exp in self._revoked.items() if exp < now]:
                del self._revoked[sid]

    async def revoke(self, session: Session) -> None:
        """Raises when the bucket cannot store it (the caller answers 503)."""
        self._remember(session.session_id, session.expires_at)
        if self._kv is None:
            raise RuntimeError("revocations are not available yet")
        await self._kv.put(session.session_id, str(session.expires_at).encode())

    async def setup(self, js: JetStreamContext) -> None:
        """Open (or create) the bucket and start watching it; a Bus on_ready hook."""
        kv = await open_bucket(js, self.bucket, self.ttl, self.replicas)
        self._kv = kv
        self._task = asyncio.create_task(self._watch(kv), name="session-revocations")

    async def _watch(self, kv: KeyValue) -> None:
        while True:
            try:
                watcher = await kv.watchall()
                async for entry in watcher:
                    if entry is None:  # the "initial values done" marker
                        self.loaded.set()
                        continue
                    if entry.value is None:
                        continue  # a delete
                    with contextlib.suppress(ValueError):
                        self._remember(entry.key, int(entry.value.decode()))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("session revocation watch failed, restarting", error=repr(exc))
                await asyncio.sleep(1)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: str
    signed_in_at: int
    last_seen_at: int  # the last token refresh: precise to half the idle window
    expires_at: int
    user_agent: str
    current: bool = False


class ActiveSessions:
    """Each user's sessions, listed and ended by the user (GET/DELETE /api/v2/auth/sessions).

    Written at sign-in and at each cookie refresh, read only when listed: no cost per request.
    Ending one revokes it like a logout."""

    def __init__(self, settings: GatewaySettings, revocations: Revocations) -> None:
        self.bucket = stream_prefix(settings.nats_prefix) + SESSIONS_BUCKET
        self.ttl = settings.session_ttl_seconds
        self.idle = settings.session_idle_seconds
        self.replicas = settings.nats_replicas
        self.revocations = revocations
        self._kv: KeyValue | None = None

    async def setup(self, js: JetStreamContext) -> None:
        self._kv = await open_bucket(js, self.bucket, self.ttl, self.replicas)

    def _bucket(self) -> KeyValue:
        if self._kv is None:
            raise RuntimeError("the session list is not available yet")
        return self._kv

    async def record(self, session: Session, user_agent: str = "") -> None:
        """At sign-in and at each refresh (raises when NATS cannot store it)."""
        kv = self._bucket()
        key = f"{session.user_id}.{session.session_id}"
        value = {
            "signed_in_at": session.auth_time,
            "last_seen_at": int(time.time()),
            "expires_at": session.ends_at(self.ttl),
            "user_agent": user_agent[:200],
        }
        if not user_agent:  # a refresh keeps what sign-in recorded
            with contextlib.suppress(*_GONE):
                entry = await kv.get(key)
                if entry.value:
                    value["user_agent"] = json.loads(entry.value).get("user_agent", "")
        await kv.put(key, json.dumps(value).encode())

    async def list(self, user_id: str, current: str = "") -> list[SessionInfo]:
        kv = self._bucket()
        now = time.time()
        found = []
        watcher = await kv.watch(f"{user_id}.*", ignore_deletes=True)
        try:
            async for entry in watcher:
                if entry is None:
                    break
                if not entry.value:
                    continue
                sid = entry.key.partition(".")[2]
                data = json.loads(entry.value)
                info = SessionInfo(
                    sid,
                    int(data["signed_in_at"]),
                    int(data["last_seen_at"]),
                    int(data["expires_at"]),
                    str(data.get("user_agent", "")),
                    current=sid == current,
                )
                # Ended: signed out, past its absolute end, or idle past its idle window.
                revoked = self.revocations.is_revoked_id(sid)
                if revoked or info.expires_at < now or info.last_seen_at + self.idle < now:
                    continue
                found.append(info)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
        return sorted(found, key=lambda i: i.signed_in_at, reverse=True)

    async def end(self, user_id: str, session_id: str) -> bool:
        """Revoke one of the user's sessions; False if the user has no such session."""
        kv = self._bucket()
        key = f"{user_id}.{session_id}"
        try:
            entry = await kv.get(key)
        except _GONE:
            return False
        expires_at = int(json.loads(entry.value or b"{}").get("expires_at", time.time() + self.ttl))
        await self.revocations.revoke(Session(user_id, session_id, expires_at))
        with contextlib.suppress(*_GONE):
            await kv.delete(key)
        return True
