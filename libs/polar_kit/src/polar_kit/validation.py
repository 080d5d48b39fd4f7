"""Request validation shared by every servicer: a caller's mistake becomes INVALID_ARGUMENT,
with a BadRequest field violation naming the field (polar_kit.grpc.status)."""

from __future__ import annotations

import functools
import uuid

from google.api import field_behavior_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

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


# --- field behaviour (google.api.field_behavior), checked for every request -----------------


def check_field_behavior(request: Message) -> None:
    """INVALID_ARGUMENT naming every field of the request, or of the messages it contains, that
    breaks its contract: a `REQUIRED` field unset (empty string, 0, UNSPECIFIED enum, empty
    list, absent message), or an `OUTPUT_ONLY` field set (the server sets it; a caller who sends
    one back, e.g. a resource it read, must learn it is not taken). Called for every request by
    the server (FieldBehaviorInterceptor), so servicers never check these themselves.
    `IMMUTABLE` needs the stored value, so it is not checked here (no RPC updates a resource)."""
    violations = _violations(request, "")
    if violations:
        raise InvalidArgument("; ".join(d for _, d in violations), violations=violations)


def _violations(message: Message, path: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for field, behavior in _fields(message.DESCRIPTOR):
        name = path + field.name
        value = getattr(message, field.name)
        if behavior == _REQUIRED and not _is_set(message, field, value):
            need = "must list at least one" if field.is_repeated else "is required"
            found.append((name, f"{name} {need}"))
        elif behavior == _OUTPUT_ONLY and _is_set(message, field, value):
            found.append((name, f"{name} is output only: the server sets it, leave it unset"))
        if field.message_type is None or not _has_behavior(field.message_type):
            continue
        if field.is_repeated:
            for i, item in enumerate(value):
                found += _violations(item, f"{name}[{i}].")
        elif message.HasField(field.name):
            found += _violations(value, f"{name}.")
    return found


def _is_set(message: Message, field: FieldDescriptor, value: object) -> bool:
    if field.is_repeated:
        return len(value) > 0  # type: ignore[arg-type]
    if field.message_type is not None or field.has_presence:
        return message.HasField(field.name)
    return bool(value)


_REQUIRED = field_behavior_pb2.REQUIRED
_OUTPUT_ONLY = field_behavior_pb2.OUTPUT_ONLY


@functools.cache
def _has_behavior(descriptor: Descriptor, seen: frozenset[str] = frozenset()) -> bool:
    """Whether any field below `descriptor` is REQUIRED or OUTPUT_ONLY: most messages are
    skipped whole (a batch of 500 RepositoryInput is not walked field by field)."""
    if descriptor.GetOptions().map_entry or descriptor.full_name in seen:
        return False
    below = seen | {descriptor.full_name}
    return any(
        behavior is not None
        or (f.message_type is not None and _has_behavior(f.message_type, below))
        for f, behavior in _fields(descriptor)
    )


@functools.cache
def _fields(descriptor: Descriptor) -> tuple[tuple[FieldDescriptor, int | None], ...]:
    """(field, REQUIRED or OUTPUT_ONLY or None) of the message's fields, read once per type."""
    extension = field_behavior_pb2.field_behavior

    def checked(field: FieldDescriptor) -> int | None:
        behaviors = field.GetOptions().Extensions[extension]
        return next((b for b in (_REQUIRED, _OUTPUT_ONLY) if b in behaviors), None)

    return tuple((f, checked(f)) for f in descriptor.fields)
