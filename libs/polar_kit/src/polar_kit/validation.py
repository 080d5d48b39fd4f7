"""Request validation shared by every servicer: a caller's mistake becomes INVALID_ARGUMENT,
with a BadRequest field violation naming the field (polar_kit.grpc.status)."""

from __future__ import annotations

import uuid

from .errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100


def parse_uuid(field: str, value: str) -> uuid.UUID:
    if not value:
        raise InvalidArgument(f"{field} is required", field=field)
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"{field} must be a UUID, got {value[:64]!r}", field=field) from None


def optional_uuid(field: str, value: str) -> uuid.UUID | None:
    return parse_uuid(field, value) if value else None


def require_text(field: str, value: str, *, max_length: int = 255) -> str:
    value = value.strip()
    if not value:
        raise InvalidArgument(f"{field} must not be empty", field=field)
    if len(value) > max_length:
        raise InvalidArgument(f"{field} must be at most {max_length} characters", field=field)
    return value


def require_positive(field: str, value: int) -> int:
    if value <= 0:
        raise InvalidArgument(f"{field} must be a positive integer, got {value}", field=field)
    return value


def page_size(value: int, *, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE) -> int:
    """AIP-158: 0 means the default, above the maximum is coerced down, negative is an error."""
    if value < 0:
        raise InvalidArgument(f"page_size must not be negative, got {value}", field="page_size")
    return min(value or default, maximum)
