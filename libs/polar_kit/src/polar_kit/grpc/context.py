"""Per-RPC state the interceptors make available to servicers (one asyncio task per RPC)."""

from __future__ import annotations

from contextvars import ContextVar

from sqlalchemy.ext.asyncio import AsyncSession

session_var: ContextVar[AsyncSession | None] = ContextVar("polar_session", default=None)
request_id_var: ContextVar[str | None] = ContextVar("polar_request_id", default=None)


def current_session() -> AsyncSession:
    """The RPC's unit of work: committed when the handler returns, rolled back if it raises."""
    session = session_var.get()
    if session is None:
        raise RuntimeError("current_session() called outside an RPC handled by polar_kit.grpc")
    return session


def current_request_id() -> str | None:
    """The request id of the RPC in progress; pass it on to outgoing calls."""
    return request_id_var.get()
