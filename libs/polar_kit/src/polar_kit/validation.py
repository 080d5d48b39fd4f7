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


def check_required(request: Message) -> None:
    """INVALID_ARGUMENT naming every field the contract marks `REQUIRED` that is unset (empty
    string, 0, UNSPECIFIED enum, empty list, absent message), in the request and in the
    messages it contains. Called for every request by the server (FieldBehaviorInterceptor),
    so servicers never check presence themselves."""
    violations = _missing(request, "")
    if violations:
        raise InvalidArgument("; ".join(d for _, d in violations), violations=violations)


def _missing(message: Message, path: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for field, required in _fields(message.DESCRIPTOR):
        name = path + field.name
        value = getattr(message, field.name)
        if required and not _is_set(message, field, value):
            need = "must list at least one" if field.is_repeated else "is required"
            found.append((name, f"{name} {need}"))
        if field.message_type is None or not _has_required(field.message_type):
            continue
        if field.is_repeated:
            for i, item in enumerate(value):
                found += _missing(item, f"{name}[{i}].")
        elif message.HasField(field.name):
            found += _missing(value, f"{name}.")
    return found


def _is_set(message: Message, field: FieldDescriptor, value: object) -> bool:
    if field.is_repeated:
        return len(value) > 0  # type: ignore[arg-type]
    if field.message_type is not None:
        return message.HasField(field.name)
    return bool(value)


@functools.cache
def _has_required(descriptor: Descriptor, seen: frozenset[str] = frozenset()) -> bool:
    """Whether any field below `descriptor` is REQUIRED: most messages are skipped whole (a
    batch of 500 RepositoryInput is not walked field by field)."""
    if descriptor.GetOptions().map_entry or descriptor.full_name in seen:
        return False
    below = seen | {descriptor.full_name}
    return any(
        required or (f.message_type is not None and _has_required(f.message_type, below))
        for f, required in _fields(descriptor)
    )


@functools.cache
def _fields(descriptor: Descriptor) -> tuple[tuple[FieldDescriptor, bool], ...]:
    """(field, REQUIRED?) of the message's fields, read once per message type."""
    behavior = field_behavior_pb2.field_behavior
    return tuple(
        (f, field_behavior_pb2.REQUIRED in f.GetOptions().Extensions[behavior])
        for f in descriptor.fields
    )
