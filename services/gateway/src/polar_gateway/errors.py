"""Every error the API answers, in one JSON shape, and the one gRPC status -> HTTP mapping.

    {"error": {"code": "not_found", "message": "...", "request_id": "...", "details": [...]}}

`code` is a stable snake_case word (the gRPC status name for upstream errors), `message` is
for people, `details` is present only for validation errors (one entry per bad field).
A service's error also brings its google.rpc details (polar_kit.grpc.status): `reason` and
`domain` (ErrorInfo), the BadRequest field violations as `details` (type field_violation,
with the `field`), `resource` (ResourceInfo, on 404) and `retry_after_seconds` (RetryInfo).

Mapping (google.rpc.Code's canonical HTTP mapping, see the table): FAILED_PRECONDITION is
400, as Google maps it — the request cannot succeed in the current state and the caller must
change something first (e.g. sign in with GitHub again); 409 stays for ALREADY_EXISTS and
ABORTED, real conflicts with another write. An upstream INTERNAL/UNKNOWN/DATA_LOSS is 502
(the gateway works; the service behind it failed); UNAVAILABLE/DEADLINE_EXCEEDED are 503 with
Retry-After so clients (and GitHub) try again.

/api/v1 keeps the monolith's shape instead (same statuses): `{"detail": "<message>"}`, and
for validation errors `{"detail": [{"loc", "msg", "type"}, ...]}` with 422.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import grpc.aio
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from polar_kit.grpc.status import DETAILS_KEY, ErrorDetails, details_of
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from .context import current_request_id

log = structlog.get_logger(__name__)

GRPC_TO_HTTP: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.OUT_OF_RANGE: 422,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 503,
    grpc.StatusCode.CANCELLED: 503,
}
UPSTREAM_FAILURE = 502  # INTERNAL, UNKNOWN, DATA_LOSS and anything unlisted
RETRY_AFTER_SECONDS = "1"

# Statuses whose upstream message may name internal hosts or stack details: replaced.
_OPAQUE = {
    grpc.StatusCode.UNAVAILABLE: "a service is unavailable, try again shortly",
    grpc.StatusCode.DEADLINE_EXCEEDED: "a service did not answer in time, try again shortly",
    grpc.StatusCode.CANCELLED: "the request was cancelled, try again",
}

_HTTP_CODES: Mapping[int, str] = {
    400: "bad_request",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_argument",
    429: "resource_exhausted",
    500: "internal",
    501: "unimplemented",
    502: "bad_gateway",
    503: "unavailable",
}


class ApiError(Exception):
    """An error the gateway itself decides on (auth, webhook checks...)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _HTTP_CODES.get(status, "error")
        self.message = message
        self.headers = dict(headers or {})


def error_body(
    code: str,
    message: str,
    details: Sequence[Mapping[str, Any]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "request_id": current_request_id()}
    if details is not None:
        error["details"] = list(details)
    error.update(extra or {})
    return {"error": error}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    details: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    return JSONResponse(
        error_body(code, message, details, extra), status_code=status, headers=headers
    )


V1_PREFIX = "/api/v1/"


def is_v1(path: str) -> bool:
    return path.startswith(V1_PREFIX)


def v1_error_body(detail: str | list[dict[str, Any]]) -> dict[str, Any]:
    return {"detail": detail}


def _answer(
    request: Request,
    status: int,
    code: str,
    message: str,
    *,
    details: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    if is_v1(request.url.path):
        # v1's 422 is always the validation list, whoever found the value invalid: one entry
        # per field the service named, at its top-level body field (v1's bodies are flatter
        # than the services' requests: amount.minor_units is v1's `amount`).
        detail: str | list[dict[str, Any]] = message
        if status == 422:
            detail = [
                {"loc": ["body", *d["location"][:1]], "msg": d["message"], "type": "value_error"}
                for d in details or ()
            ] or [{"loc": [], "msg": message, "type": "value_error"}]
        return JSONResponse(v1_error_body(detail), status_code=status, headers=headers)
    return error_response(status, code, message, details=details, headers=headers, extra=extra)


def status_for(code: grpc.StatusCode) -> int:
    return GRPC_TO_HTTP.get(code, UPSTREAM_FAILURE)


def from_rpc_error(exc: grpc.aio.AioRpcError, request: Request | None = None) -> Response:
    code = exc.code()
    status = status_for(code)
    if code in _OPAQUE:
        message = _OPAQUE[code]
    elif status >= 500:
        message = "a service failed to handle the request"
    else:
        message = exc.details() or code.name.lower()
    rich = details_of(exc)
    details, extra = _rich_error(rich) if status < 500 else (None, {})
    headers = None
    if status == 503:
        delay = rich.retry_delay_seconds
        seconds = str(max(1, math.ceil(delay))) if delay is not None else RETRY_AFTER_SECONDS
        headers = {"Retry-After": seconds}
        extra = {"retry_after_seconds": float(seconds)}
    if status >= 500:
        log.warning("upstream call failed", code=code.name, details=exc.details())
    kw: dict[str, Any] = {"details": details, "headers": headers, "extra": extra}
    if request is not None:
        return _answer(request, status, code.name.lower(), message, **kw)
    return error_response(status, code.name.lower(), message, **kw)


def body_fields(exc: grpc.aio.AioRpcError, field: str) -> grpc.aio.AioRpcError:
    """The same error with its field violations named relative to the request field the HTTP
    body stands for (`reward.amount.currency` -> `amount.currency`): an HTTP caller names the
    fields of its body, whatever message the service wraps them in."""
    prefix = f"{field}."
    trailing = grpc.aio.Metadata()
    for key, value in exc.trailing_metadata() or ():
        if key == DETAILS_KEY and isinstance(value, bytes):
            value = _rebased(value, prefix)
        trailing.add(key, value)
    return grpc.aio.AioRpcError(
        exc.code(), exc.initial_metadata(), trailing, exc.details(), exc.debug_error_string()
    )


def _rebased(value: bytes, prefix: str) -> bytes:
    try:
        status = status_pb2.Status.FromString(value)
    except DecodeError:
        return value
    for packed in status.details:
        bad = error_details_pb2.BadRequest()
        if packed.Unpack(bad):
            for violation in bad.field_violations:
                violation.field = violation.field.removeprefix(prefix)
                violation.description = violation.description.removeprefix(prefix)
            packed.Pack(bad)
    return bytes(status.SerializeToString())


def _rich_error(rich: ErrorDetails) -> tuple[list[dict[str, Any]] | None, dict[str, Any]]:
    """A service's google.rpc details as v2's `details` (field violations) and the fields
    reason/domain/resource. Only for the caller's errors (4xx): a failing service's details
    stay in the logs."""
    details = [
        {
            "location": [part for part in re.split(r"[.\[\]]+", field) if part],
            "message": description,
            "type": "field_violation",
            "field": field,
        }
        for field, description in rich.field_violations
    ]
    extra: dict[str, Any] = {}
    if rich.reason:
        extra |= {"reason": rich.reason, "domain": rich.domain}
    if rich.resource_type or rich.resource_name:
        extra["resource"] = {"type": rich.resource_type, "name": rich.resource_name}
    return details or None, extra


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for error in exc.errors():
        details.append(
            {
                "location": [str(part) for part in error.get("loc", ())],
                "message": str(error.get("msg", "")),
                "type": str(error.get("type", "")),
            }
        )
    return details


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _answer(request, exc.status, exc.code, exc.message, headers=exc.headers)

    async def rpc_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, grpc.aio.AioRpcError)
        return from_rpc_error(exc, request)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        if is_v1(request.url.path):
            detail = [
                {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e["type"]}
                for e in exc.errors()
            ]
            return JSONResponse(v1_error_body(detail), status_code=422)
        return error_response(
            422,
            "invalid_argument",
            "the request is not valid, see details",
            details=_validation_details(exc),
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if is_v1(request.url.path):
            return JSONResponse(
                v1_error_body(message), status_code=exc.status_code, headers=exc.headers
            )
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        return error_response(
            exc.status_code,
            _HTTP_CODES.get(exc.status_code, "error"),
            message,
            headers=dict(exc.headers or {}),
        )

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", path=request.url.path)
        return _answer(request, 500, "internal", "internal error")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(grpc.aio.AioRpcError, rpc_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
