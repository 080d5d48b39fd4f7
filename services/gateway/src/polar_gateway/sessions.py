"""Session tokens: signed (HS256 JWT), stateless to check, revocable at logout.

A token carries the user id (`sub`), a random session id (`sid`) and its expiry. It is sent
as the HttpOnly session cookie or as `Authorization: Bearer`. Logout revokes the session id
in a JetStream key-value bucket that every gateway replica watches into memory, so checking
a token never costs a network round trip. The bucket keeps entries for the token lifetime
(after that the token is expired anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import uuid
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

ALGORITHM = "HS256"
ISSUER = "polar-gateway"
SESSION = "session"
OAUTH_STATE = "oauth_state"


@dataclass(frozen=True, slots=True)
class Session:
    user_id: str
    session_id: str
    expires_at: int


class TokenSigner:
    def __init__(self, settings: GatewaySettings) -> None:
        self._key = settings.session_secret.get_secret_value()
        self.ttl = settings.session_ttl_seconds

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
        session_id = secrets.token_urlsafe(16)
        ttl = ttl or self.ttl
        token = self.sign({"typ": SESSION, "sub": user_id, "sid": session_id}, ttl)
        return token, Session(user_id, session_id, int(time.time() + ttl))

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
        return Session(sub, sid, int(claims["exp"]))


class Revocations:
    """Revoked session ids: written to a KV bucket, read from memory (kept by a watcher)."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.bucket = stream_prefix(settings.nats_prefix) + "POLAR_GATEWAY_REVOKED_SESSIONS"
        self.ttl = settings.session_ttl_seconds
        self.replicas = settings.nats_replicas
        self._revoked: dict[str, int] = {}  # session id -> token expiry (epoch seconds)
        self._kv: KeyValue | None = None
        self._task: asyncio.Task[None] | None = None

    def is_revoked(self, session: Session) -> bool:
        return session.session_id in self._revoked

    def _remember(self, session_id: str, expires_at: int) -> None:
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
        try:
            kv = await js.key_value(self.bucket)
        except nats.js.errors.BucketNotFoundError:
            kv = await js.create_key_value(
                KeyValueConfig(
                    bucket=self.bucket,
                    history=1,
                    ttl=float(self.ttl),
                    storage=StorageType.FILE,
                    replicas=self.replicas,
                )
            )
        self._kv = kv
        self._task = asyncio.create_task(self._watch(kv), name="session-revocations")

    async def _watch(self, kv: KeyValue) -> None:
        while True:
            try:
                watcher = await kv.watchall()
                async for entry in watcher:
                    if entry is None or entry.value is None:
                        continue  # the "initial values done" marker, or a delete
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
