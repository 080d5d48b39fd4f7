"""Domain errors: raised by service logic, turned into gRPC statuses by the server interceptor."""

from __future__ import annotations

from typing import ClassVar

import grpc


class DomainError(Exception):
    """A failure the caller can act on. The message is sent to the caller as status details."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


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


def is_transient(exc: BaseException) -> bool:
    """A database or network outage: not the caller's or the message's fault; retry later."""
    from sqlalchemy import exc as sa_exc  # local: keeps this module free of heavy imports

    return isinstance(
        exc, OSError | TimeoutError | sa_exc.OperationalError | sa_exc.InterfaceError
    ) or bool(getattr(exc, "connection_invalidated", False))
