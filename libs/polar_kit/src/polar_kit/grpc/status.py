"""Rich gRPC errors (AIP-193): google.rpc details on every error a service answers.

The server side (`rich_status`, used by the ErrorInterceptor) attaches to each status:
an ErrorInfo (a stable `reason`, the service's `domain`), and by kind a BadRequest with the
field violations of INVALID_ARGUMENT, a ResourceInfo naming what was NOT_FOUND, a RetryInfo
for UNAVAILABLE. They travel in the `grpc-status-details-bin` trailer (grpcio-status).
The client side (`details_of`) reads them back from a grpc.aio.AioRpcError.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
import grpc.aio
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from polar_kit.errors import DomainError, InvalidArgument, NotFound

DETAILS_KEY = "grpc-status-details-bin"
RETRY_DELAY_SECONDS = 1  # what an UNAVAILABLE answer asks the caller to wait


def domain_of(method: str) -> str:
    """`/polar.repository.v1.RepositoryService/GetIssue` -> `polar.repository.v1`."""
    service = method.strip("/").split("/", 1)[0]
    return service.rsplit(".", 1)[0] if "." in service else service


def rich_status(
    code: grpc.StatusCode, message: str, *, domain: str, error: DomainError | None = None
) -> tuple[str, bytes]:
    """The trailer (key, value) carrying a google.rpc.Status with its details."""
    reason = error.reason if error is not None else code.name
    details: list[Message] = [error_details_pb2.ErrorInfo(reason=reason, domain=domain)]
    if isinstance(error, InvalidArgument) and error.violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in error.violations
                ]
            )
        )
    if isinstance(error, NotFound) and (error.RESOURCE_TYPE or error.resource_name):
        details.append(
            error_details_pb2.ResourceInfo(
                resource_type=error.RESOURCE_TYPE,
                resource_name=error.resource_name,
                description=error.message,
            )
        )
    if code == grpc.StatusCode.UNAVAILABLE:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromSeconds(RETRY_DELAY_SECONDS)
        details.append(retry)
    status = status_pb2.Status(code=code.value[0], message=message)
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    [(key, value)] = rpc_status.to_status(status).trailing_metadata
    return str(key), bytes(value)


@dataclass
class ErrorDetails:
    """What a rich status says, read back by a caller."""

    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    # (field, description) of each BadRequest field violation
    field_violations: list[tuple[str, str]] = field(default_factory=list)
    resource_type: str = ""
    resource_name: str = ""
    retry_delay_seconds: float | None = None


def details_of(exc: grpc.aio.AioRpcError) -> ErrorDetails:
    """The google.rpc details of a failed call (empty when it carries none)."""
    found = ErrorDetails()
    status = _status(exc)
    if status is None:
        return found
    for packed in status.details:
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        resource = error_details_pb2.ResourceInfo()
        retry = error_details_pb2.RetryInfo()
        if packed.Unpack(info):
            found.reason, found.domain = info.reason, info.domain
            found.metadata = dict(info.metadata)
        elif packed.Unpack(bad):
            found.field_violations += [(v.field, v.description) for v in bad.field_violations]
        elif packed.Unpack(resource):
            found.resource_type = resource.resource_type
            found.resource_name = resource.resource_name
        elif packed.Unpack(retry):
            found.retry_delay_seconds = retry.retry_delay.ToTimedelta().total_seconds()
    return found


def _status(exc: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    for key, value in exc.trailing_metadata() or ():
        if key == DETAILS_KEY and isinstance(value, bytes):
            try:
                status = status_pb2.Status.FromString(value)
            except DecodeError:
                return None
            # A status for another code is not ours to trust (grpcio-status checks the same).
            return status if status.code == exc.code().value[0] else None
    return None
