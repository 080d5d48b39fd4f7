"""Small pieces shared by the route modules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import orjson
from fastapi import Path, Query
from fastapi.responses import Response
from pydantic import BaseModel

from ..schemas import ErrorResponse
from ..schemas_v1 import ErrorDetail, HTTPValidationError

# /api/v2 is the recommended API (envelopes, cursors, money with a currency, one error
# object); /api/v1 is the monolith's contract, kept for its clients (docs/decisions/0009).
V1 = "/api/v1"
V2 = "/api/v2"
API_PREFIX = V2

Limit = Annotated[int, Query(ge=1, le=100, description="Items per page (1 to 100).")]
Cursor = Annotated[
    str | None,
    Query(max_length=1024, description="`next_cursor` of the previous page; omit for the first."),
]
OrgName = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}$", description="GitHub account login.")
]
RepoName = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9._-]{1,100}$", description="GitHub repository name.")
]


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` documenting error statuses with the one error shape."""
    return {status: {"model": ErrorResponse} for status in statuses}


AUTHED = errors(401, 403, 404, 422, 503)


def v1_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The same for /api/v1: `{"detail": "..."}`, or for 422 `{"detail": [{loc, msg, type}]}`."""
    return {
        status: {"model": HTTPValidationError if status == 422 else ErrorDetail}
        for status in statuses
    }


def json_response(
    content: Mapping[str, Any] | Sequence[Any] | BaseModel, status_code: int = 200
) -> Response:
    """Encode with orjson (datetimes as RFC 3339 with Z). Routes keep their response_model
    for the OpenAPI document; FastAPI does not re-validate what the mappers built."""
    return Response(encode(content), status_code=status_code, media_type="application/json")


def encode(content: Mapping[str, Any] | Sequence[Any] | BaseModel) -> bytes:
    if isinstance(content, BaseModel):
        content = content.model_dump(mode="json")
    return orjson.dumps(content, option=orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS)


def not_modified(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match (RFC 9110: a list, weak comparison, or `*`) matches `etag`."""
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return etag in tags or "*" in tags


def cached_response(request_headers: Mapping[str, str], body: bytes, etag: str) -> Response:
    """The answer with its ETag, or 304 when the client has it already."""
    if not_modified(request_headers.get("if-none-match"), etag):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(body, media_type="application/json", headers={"ETag": etag})
