"""Domain errors: raised by service logic, turned into gRPC statuses by the server interceptor."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Sequence
from typing import ClassVar

import grpc


class DomainError(Exception):
    """A failure the caller can act on. The message is sent to the caller as status details,
    with google.rpc details (polar_kit.grpc.status): an ErrorInfo whose reason is `reason`
    (by default the class name in UPPER_SNAKE_CASE: IssueNotFound -> ISSUE_NOT_FOUND, a
    stable identifier callers may branch on), and what the subclasses below add."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.FAILED_PRECONDITION
    REASON: ClassVar[str | None] = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def reason(self) -> str:
        return self.REASON or re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).upper()


class InvalidArgument(DomainError):
    """`field` (a request field's path, e.g. `amount.minor_units`) becomes a BadRequest
    field violation; `violations` lists several (field, description) at once."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        violations: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.violations = [(field, message)] if field else list(violations)


class NotFound(DomainError):
    """Sent with a ResourceInfo: `RESOURCE_TYPE` (a message's full name, set by subclasses)
    and the name or id that was not found."""

    code = grpc.StatusCode.NOT_FOUND
    RESOURCE_TYPE: ClassVar[str] = ""

    def __init__(self, message: str, *, resource_name: str = "") -> None:
        super().__init__(message)
        self.resource_name = resource_name


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(DomainError):
    """A concurrent change won; the caller may retry."""

    code = grpc.StatusCode.ABORTED


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED


# Failures are classified by what they say about the future:
# - TRANSIENT: the database or NATS is unavailable (down, restarting, overloaded, failed
#   over) or the transaction lost a race (deadlock, serialization). Retrying later succeeds
#   without anything changing; no retry budget is spent on it.
# - PERMANENT: the data can never be stored or read as it is (a value out of range, a NUL
#   in a text, JSON too deeply nested). Retrying is pointless: park it with the reason.
# - UNKNOWN: anything else (most likely a bug): retried a bounded number of times.
class Fault(enum.StrEnum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    UNKNOWN = "unknown"


TRANSIENT, PERMANENT, UNKNOWN = Fault.TRANSIENT, Fault.PERMANENT, Fault.UNKNOWN

# PostgreSQL error codes (https://www.postgresql.org/docs/current/errcodes-appendix.html).
# Left UNKNOWN (a bounded retry) although in a decisive class: 08P01 (protocol violation)
# says our statement was malformed, not that the server is away; 23505 and 23503 (unique,
# foreign key) can come from a race with a concurrent writer that a retry resolves.
_TRANSIENT_CLASSES = ("08", "53")  # connection exception, insufficient resources
_TRANSIENT_CODES = frozenset(
    {
        "57P01",  # admin_shutdown: terminated by an administrator or a fast shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now: starting up, in recovery, shutting down
        "57P05",  # idle_session_timeout
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "25006",  # read_only_sql_transaction: a primary that failed over to a replica
        "55P03",  # lock_not_available
        "58000",  # system_error
        "58030",  # io_error
    }
)
_UNKNOWN_CODES = frozenset({"08P01", "23505", "23503"})
_PERMANENT_CLASSES = ("22", "23")  # data exception, integrity constraint violation
# Exceptions raised by our own code on data that can never be processed.
_PERMANENT_TYPES: tuple[type[BaseException], ...] = (
    RecursionError,  # JSON nested deeper than the parser allows
    OverflowError,  # an integer that fits no column
    UnicodeError,
)


def classify(exc: BaseException) -> Fault:
    """TRANSIENT, PERMANENT or UNKNOWN (see above), by SQLSTATE and exception type.

    The cause chain is examined: SQLAlchemy wraps driver errors in a plain DBAPIError whose
    `.orig` (and `__cause__`) carries asyncpg's exception and its `sqlstate`; a PostgreSQL
    code found anywhere in the chain decides first. `__context__` is not followed: an error
    raised while handling another one says nothing about it.
    """
    code = sqlstate(exc)
    if code is not None:
        return _classify_sqlstate(code)
    chain = list(causes(exc))
    for e in chain:
        if isinstance(e, _PERMANENT_TYPES):
            return PERMANENT
    for e in chain:
        if _is_outage(e):
            return TRANSIENT
    return UNKNOWN


def sqlstate(exc: BaseException) -> str | None:
    """The PostgreSQL error code (SQLSTATE) behind `exc`, if any."""
    for e in causes(exc):
        code = getattr(e, "sqlstate", None)
        if isinstance(code, str) and len(code) == 5:
            return code
    return None


UNIQUE_VIOLATION = "23505"


def is_transient(exc: BaseException) -> bool:
    """A database or network outage: not the caller's or the message's fault; retry later."""
    return classify(exc) == TRANSIENT


def _classify_sqlstate(code: str) -> Fault:
    if code in _UNKNOWN_CODES:
        return UNKNOWN
    if code in _TRANSIENT_CODES or code.startswith(_TRANSIENT_CLASSES):
        return TRANSIENT
    if code.startswith(_PERMANENT_CLASSES):
        return PERMANENT
    return UNKNOWN


def _is_outage(exc: BaseException) -> bool:
    import asyncpg  # local: keeps this module free of heavy imports
    import nats.errors
    import nats.js.errors
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, asyncpg.exceptions.InterfaceError) and "connection is closed" in str(exc):
        return True  # other InterfaceErrors are client-side misuse (bugs), not outages
    return isinstance(
        exc,
        OSError  # connection refused / reset, host unreachable
        | TimeoutError
        | asyncpg.exceptions.ConnectionDoesNotExistError
        | sa_exc.OperationalError
        | sa_exc.DisconnectionError
        | nats.errors.ConnectionClosedError
        | nats.errors.ConnectionReconnectingError
        | nats.errors.NoServersError
        | nats.errors.NoRespondersError  # JetStream not (yet) answering
        | nats.errors.TimeoutError
        | nats.errors.UnexpectedEOF
        | nats.errors.StaleConnectionError
        | nats.errors.OutboundBufferLimitError
        | nats.js.errors.ServiceUnavailableError,
    ) or bool(getattr(exc, "connection_invalidated", False))


def causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what caused it (`.orig` of SQLAlchemy errors, `__cause__`)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        for nxt in (getattr(e, "orig", None), e.__cause__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
