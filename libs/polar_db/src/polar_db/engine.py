"""Async engine and session factory for PostgreSQL through asyncpg."""

from __future__ import annotations

import json
from typing import Any

import orjson
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from polar_db.models.base import role_of

_POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+asyncpg"}
# What orjson would encode differently from json.dumps (which refuses them) raises instead.
_PASSTHROUGH = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def json_dumps(value: Any) -> str:
    """JSON and JSONB parameters. orjson is ~10x faster than json.dumps, and a stored issue has
    seven JSONB columns (webhooks store thousands a second); what orjson refuses (non-string
    keys, integers beyond 64 bits, lone surrogates) goes to json.dumps as before."""
    try:
        return orjson.dumps(value, option=_PASSTHROUGH).decode()
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value)


def json_loads(text: str) -> Any:
    """JSON and JSONB values read (PostgreSQL's own output: valid JSON). orjson is ~4x faster
    than json.loads; unlike it, an integer beyond 64 bits comes back as a float."""
    return orjson.loads(text)


def _parse(url: str) -> URL:
    parsed = make_url(url)
    if parsed.drivername not in _POSTGRES_SCHEMES:
        raise ValueError(f"not a PostgreSQL URL: {parsed.drivername}://...")
    return parsed


def sqlalchemy_url(url: str) -> URL:
    """The SQLAlchemy URL (postgresql+asyncpg://) of any PostgreSQL URL form."""
    parsed = _parse(url).set(drivername="postgresql+asyncpg")
    # libpq's sslmode is not understood by the asyncpg dialect, which takes `ssl` instead.
    if "sslmode" in parsed.query:
        query = dict(parsed.query)
        query["ssl"] = query.pop("sslmode")
        parsed = parsed.set(query=query)
    return parsed


def asyncpg_dsn(url: str) -> str:
    """The plain postgresql:// form of `url`, for asyncpg.connect()."""
    return _parse(url).set(drivername="postgresql").render_as_string(hide_password=False)


def server_settings(owner: str | None, role: str | None = None) -> dict[str, str]:
    """Start-up parameters of a connection acting for service `owner` (decision 0021): its
    role (`polar_<owner>` unless `role` says otherwise; "" keeps the login user's), which may
    use its own schema only, and a search_path of that schema, where unqualified names (the
    outbox, processed marks, raw SQL) find the service's own tables. Set at start-up rather
    than by SET, so no statement, RESET or pool hand-over can run without them."""
    if owner is None:
        return {}
    settings = {"search_path": owner}
    role = role_of(owner) if role is None else role
    if role:
        settings["role"] = role
    return settings


def create_engine(
    url: str, *, owner: str | None = None, role: str | None = None, **kw: Any
) -> AsyncEngine:
    """An AsyncEngine for postgresql://, postgres:// or postgresql+asyncpg:// URLs.

    `owner`: the service whose connections these are, acting as its role within its
    schema (server_settings); None for tools and tests that see every schema.

    Defaults suit one service process: a pool of 10 connections (plus 10 overflow). No
    pre-ping: it would add a round trip to every request (doubling the cost of a simple
    read). A connection broken by a PostgreSQL restart fails one request instead, which the
    gRPC layer reports as UNAVAILABLE (retryable) and the pool then discards. Errors never
    carry the statement's parameters (they can be OAuth tokens, and errors get logged).
    Any default can be overridden through `kw`.
    """
    options: dict[str, Any] = {
        "pool_size": 10,
        "max_overflow": 10,
        "pool_recycle": 1800,
        "hide_parameters": True,
        "json_serializer": json_dumps,
        "json_deserializer": json_loads,
    }
    if settings := server_settings(owner, role):
        options["connect_args"] = {"server_settings": settings}
    options.update(kw)
    return create_async_engine(sqlalchemy_url(url), **options)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep attribute values after commit (no implicit lazy refresh in async)."""
    return async_sessionmaker(engine, expire_on_commit=False)
