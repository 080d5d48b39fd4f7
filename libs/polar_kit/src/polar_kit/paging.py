"""Keyset paging, one helper for every List method: opaque page tokens carrying the sort key
of the last row of a page, checked value by value when they come back.

Keyset paging (WHERE key > last ORDER BY key LIMIT n+1) costs the same on page 1000 as on
page 1, unlike OFFSET, and a row inserted meanwhile never shifts a page. A token is the
caller's input: anything that is not a token we made (bad base64 or JSON, a value of the
wrong type, a number the column cannot hold, a text PostgreSQL refuses) is INVALID_ARGUMENT,
never a database error.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from .errors import InvalidArgument

T = TypeVar("T")
Key = str | int | uuid.UUID | datetime
Kind = Callable[[object], Any]  # checks and converts one decoded value; raises ValueError

MAX_TOKEN_LENGTH = 2048  # ours are far shorter; bounds the work spent on a crafted one
MAX_TEXT_LENGTH = 1024
INT32_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_page_token: str


def page(rows: Sequence[T], size: int, key: Callable[[T], Sequence[Key]]) -> Page[T]:
    """The page of `rows` (fetched with LIMIT size + 1): the first `size`, and a token made
    of `key(last row)` when more follow."""
    items = rows[:size]
    more = len(rows) > size
    return Page(items, encode_token(key(items[-1])) if more else "")


def encode_token(values: Sequence[Key]) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    raw = json.dumps(
        [str(v) if isinstance(v, uuid.UUID) else v for v in plain], separators=(",", ":")
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, *kinds: Kind) -> tuple[Any, ...] | None:
    """The values of a token made by `encode_token`, each checked and converted by its kind
    (`text`, `uuid_`, `positive_int32`, `timestamp`); None for an empty token (first page)."""
    if not token:
        return None
    try:
        if len(token) > MAX_TOKEN_LENGTH:
            raise ValueError("too long")
        values = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(values, list) or len(values) != len(kinds):
            raise ValueError("wrong shape")
        return tuple(kind(value) for kind, value in zip(kinds, values, strict=True))
    except (binascii.Error, ValueError, TypeError, RecursionError):
        raise InvalidArgument("page_token is malformed; pass next_page_token unchanged") from None


def text(value: object) -> str:
    # PostgreSQL text cannot hold NUL: such a value would fail in the database, not here.
    if not isinstance(value, str) or "\x00" in value or len(value) > MAX_TEXT_LENGTH:
        raise ValueError("not a text key")
    return value


def uuid_(value: object) -> uuid.UUID:
    if not isinstance(value, str):
        raise ValueError("not a UUID key")
    return uuid.UUID(value)


def positive_int32(value: object) -> int:
    """A positive integer column value (PostgreSQL `integer`: below 2**31)."""
    if type(value) is not int or not 0 < value <= INT32_MAX:
        raise ValueError("not a positive 32-bit key")
    return value


def timestamp(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError("not a timestamp key")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("timestamp key without a time zone")
    return parsed
