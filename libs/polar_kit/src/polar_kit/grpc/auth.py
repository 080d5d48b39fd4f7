"""Who is calling: signed per-call credentials between Polar's processes (decision 0005).

Every call carries `authorization: polar-internal v1.<caller>.<expires>.<mac>`, where `mac`
is HMAC-SHA256 over the caller, the full method name and the expiry, keyed with the
caller's own key. A caller's key is derived from the internal secret
(`HMAC(POLAR_INTERNAL_SECRET, caller)`): the services hold the secret and so can check every
caller; the gateway, the one process the internet reaches, holds only its own key
(`POLAR_INTERNAL_CALLER_KEY`), so a compromised gateway cannot act as another caller.
A token names one method and lives a minute: one seen on the wire cannot be used for
anything else, nor for long.

The server checks the token, then the service's allow-list (caller -> methods). Health
checks need no credentials (probes); reflection, when enabled, neither (it shows only the
published contracts).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from typing import Any

import grpc
import grpc.aio
import structlog

from polar_kit.grpc.interceptors import Context, Handler, Scope, _wrap
from polar_kit.secrets import InsecureSecretError, check_secret
from polar_kit.settings import ServiceSettings

log = structlog.get_logger(__name__)

METADATA_KEY = "authorization"
SCHEME = "polar-internal "
TOKEN_SECONDS = 60
# Clocks of two pods may disagree a little; a token from further ahead is refused.
CLOCK_SKEW_SECONDS = 30

# The identities a token may name. `operator` is a person's tool (bench, scripts, calls by
# hand through `operator_channel`): it needs the internal secret itself.
GATEWAY = "gateway"
ORGANIZATION = "organization"
REPOSITORY = "repository"
REWARD = "reward"
OPERATOR = "operator"
CALLERS = frozenset({GATEWAY, ORGANIZATION, REPOSITORY, REWARD, OPERATOR})
# Any other domain service is an identity too, by its name (`make new-service`, decision
# 0026): the name is inside the MAC, so only a holder of the secret (or of that name's key)
# can use it, and a server knows the names its allow-lists mention.
IDENTITY = re.compile(r"[a-z]{2,20}")

# Public (here and in polar_kit.secrets.PUBLISHED_SECRETS): only POLAR_DEV_MODE accepts it.
DEV_INTERNAL_SECRET = "dev-only-internal-secret"

# Methods open to every caller, with or without credentials.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

_TOKEN = re.compile(r"v1\.([a-z]+)\.(\d{1,12})\.([0-9a-f]{64})")


def caller_key(secret: str, caller: str) -> str:
    """The signing key of `caller`: what `python -m polar_kit.grpc.auth key CALLER` prints."""
    return hmac.new(
        secret.encode(), f"polar-internal:{caller}".encode(), hashlib.sha256
    ).hexdigest()


def _mac(key: str, caller: str, method: str, expires: int) -> str:
    message = f"v1.{caller}.{method}.{expires}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


class CallerCredentials:
    """A caller's name and key; makes the token of each call."""

    def __init__(self, caller: str, key: str) -> None:
        if not IDENTITY.fullmatch(caller):
            raise ValueError(f"a caller is 2-20 lower-case letters, not {caller!r}")
        self.caller = caller
        self._key = key

    def token(self, method: str, *, now: float | None = None) -> str:
        expires = int(now if now is not None else time.time()) + TOKEN_SECONDS
        return f"v1.{self.caller}.{expires}.{_mac(self._key, self.caller, method, expires)}"

    def metadata(self, method: str) -> tuple[str, str]:
        """The metadata entry for a call of `method` (`/package.Service/Method`)."""
        return (METADATA_KEY, SCHEME + self.token(method))


def internal_secret(settings: ServiceSettings) -> str:
    """The secret a server verifies callers with; fails closed outside development mode."""
    secret = settings.internal_secret.get_secret_value()
    check_secret("POLAR_INTERNAL_SECRET", secret, dev_mode=settings.dev_mode)
    return secret or DEV_INTERNAL_SECRET


def credentials(
    caller: str, settings: ServiceSettings, *, fail_closed: bool = True
) -> CallerCredentials:
    """`caller`'s credentials from POLAR_INTERNAL_CALLER_KEY, else derived from
    POLAR_INTERNAL_SECRET. A process (`fail_closed`) refuses to start on a missing or public
    value outside development mode; a hand-run tool (`fail_closed=False`) falls back to the
    development secret, which only a server in development mode accepts."""
    key = settings.internal_caller_key.get_secret_value()
    if key:
        if fail_closed and not settings.dev_mode and key == caller_key(DEV_INTERNAL_SECRET, caller):
            raise InsecureSecretError("POLAR_INTERNAL_CALLER_KEY is the development key")
        if fail_closed:
            check_secret("POLAR_INTERNAL_CALLER_KEY", key, dev_mode=settings.dev_mode)
        return CallerCredentials(caller, key)
    secret = settings.internal_secret.get_secret_value()
    if fail_closed:
        check_secret("POLAR_INTERNAL_SECRET", secret, dev_mode=settings.dev_mode)
    return CallerCredentials(caller, caller_key(secret or DEV_INTERNAL_SECRET, caller))


# --- server ----------------------------------------------------------------------------------

AllowList = Mapping[str, Collection[str]]  # caller -> method names (`GetUser`), or ALL
ALL = frozenset({"*"})  # every method of the service


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """UNAUTHENTICATED without a valid token, PERMISSION_DENIED for a caller the service's
    allow-list does not name for the method. `allow` maps full service names
    (`polar.organization.v1.OrganizationService`) to their allow-lists.

    Decides before the handler runs and hands an accepted call's handler on unwrapped: one
    more wrapping layer would cost every call more than the check itself."""

    def __init__(
        self, secret: str, allow: Mapping[str, AllowList], clock: Callable[[], float] = time.time
    ) -> None:
        # The known identities and every one an allow-list names (a service's own callers).
        named = {caller for callers in allow.values() for caller in callers}
        self._keys = {caller: caller_key(secret, caller) for caller in CALLERS | named}
        self._allow = allow
        self._clock = clock

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        caller = self._verify(method, details.invocation_metadata)
        if caller is None:
            log.warning("internal call refused: no valid credentials", rpc=method)
            return _wrap(handler, method, _refuse(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED))
        _, service, name = [*method.split("/"), "", ""][:3]
        allowed = self._allow.get(service, {}).get(caller, ())
        if name not in allowed and "*" not in allowed:
            log.warning("internal call refused: not allowed", caller=caller, rpc=method)
            message = f"caller {caller!r} may not call {name}"
            return _wrap(handler, method, _refuse(grpc.StatusCode.PERMISSION_DENIED, message))
        return handler

    def _verify(self, method: str, metadata: Any) -> str | None:
        value = next((v for k, v in metadata or () if k == METADATA_KEY), None)
        if not isinstance(value, str) or not value.startswith(SCHEME):
            return None
        match = _TOKEN.fullmatch(value.removeprefix(SCHEME))
        if match is None or (key := self._keys.get(match[1])) is None:
            return None
        caller, expires, mac = match[1], int(match[2]), match[3]
        now = self._clock()
        if not now - CLOCK_SKEW_SECONDS <= expires <= now + TOKEN_SECONDS + CLOCK_SKEW_SECONDS:
            return None
        if not hmac.compare_digest(mac, _mac(key, caller, method, expires)):
            return None
        return caller


UNAUTHENTICATED = "missing or invalid internal credentials (see SECURITY.md)"


def _refuse(code: grpc.StatusCode, message: str) -> Scope:
    @asynccontextmanager
    async def scope(method: str, context: Context) -> AsyncIterator[None]:
        # abort() replaces trailing metadata; keep what was set (the request id).
        await context.abort(code, message, tuple(context.trailing_metadata() or ()))
        yield  # never reached: abort raises

    return scope


# --- client ----------------------------------------------------------------------------------


class CredentialsInterceptor(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
):
    """Adds the caller's token to every call of a grpc.aio channel."""

    def __init__(self, credentials: CallerCredentials) -> None:
        self.credentials = credentials

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add(*self.credentials.metadata(method))
        return grpc.aio.ClientCallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
        )

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request)

    async def intercept_unary_stream(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request)


def channel(target: str, credentials: CallerCredentials, **kwargs: Any) -> grpc.aio.Channel:
    """An insecure grpc.aio channel whose every call carries `credentials`."""
    return grpc.aio.insecure_channel(
        target, interceptors=[CredentialsInterceptor(credentials)], **kwargs
    )


def operator_channel(target: str, settings: ServiceSettings | None = None) -> grpc.aio.Channel:
    """A channel for a person's tool (scripts, bench): the `operator` identity from
    POLAR_INTERNAL_SECRET, or the development secret when it is unset."""
    settings = settings or ServiceSettings()
    return channel(target, credentials(OPERATOR, settings, fail_closed=False))


def main(argv: list[str] | None = None) -> int:
    """`python -m polar_kit.grpc.auth key CALLER`: print CALLER's key, derived from
    POLAR_INTERNAL_SECRET (for the gateway's POLAR_INTERNAL_CALLER_KEY)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m polar_kit.grpc.auth", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    key = sub.add_parser("key", help="print a caller's key")
    key.add_argument("caller", help=f"e.g. {', '.join(sorted(CALLERS))}, or a service's name")
    args = parser.parse_args(argv)
    if not IDENTITY.fullmatch(args.caller):
        parser.error(f"a caller is 2-20 lower-case letters, not {args.caller!r}")
    settings = ServiceSettings()
    secret = settings.internal_secret.get_secret_value()
    if not secret:
        parser.error("POLAR_INTERNAL_SECRET is not set")
    print(caller_key(secret, args.caller))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
