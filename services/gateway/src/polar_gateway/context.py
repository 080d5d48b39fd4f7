"""Per-request state shared by the middleware, the routes and the gRPC client (clients.py)."""

from __future__ import annotations

import random
import re
from contextvars import ContextVar

REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

request_id_var: ContextVar[str | None] = ContextVar("polar_gateway_request_id", default=None)


def current_request_id() -> str | None:
    return request_id_var.get()


def accept_request_id(value: str | None) -> str:
    """The caller's X-Request-ID when sane (it goes into logs and metadata), else a new one."""
    if value and _VALID_REQUEST_ID.match(value):
        return value
    # Not a secret, only unique: the PRNG, not a uuid4 syscall per request.
    return f"{random.getrandbits(128):032x}"
