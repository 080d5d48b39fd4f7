"""Opaque keyset page tokens: the sort key of the last row of a page, encoded.

Keyset paging (WHERE key > last ORDER BY key LIMIT n+1) costs the same on page 1000 as on
page 1, unlike OFFSET, and a row inserted meanwhile never shifts a page.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence

from .errors import InvalidArgument

Key = str | int


def encode_token(values: Sequence[Key]) -> str:
    raw = json.dumps(list(values), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, *, arity: int) -> list[Key]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError):
        raise InvalidArgument("page_token is malformed; pass next_page_token unchanged") from None
    if (
        not isinstance(values, list)
        or len(values) != arity
        or not all(isinstance(v, str | int) and not isinstance(v, bool) for v in values)
    ):
        raise InvalidArgument("page_token is malformed; pass next_page_token unchanged")
    return values
