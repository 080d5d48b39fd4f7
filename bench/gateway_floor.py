"""The floors of the gateway benchmarks: bare ASGI apps under the same uvicorn.

- `hmac_app`: webhook ingress that only verifies X-Hub-Signature-256 and answers 202
  (nothing parsed, nothing stored).
- `organizations_app`: GET /api/v2/user/organizations for one user, read with one SQL query
  (organizations joined with their repositories) from an asyncpg pool, grouped and
  JSON-encoded here; no authentication, no services.
- `memory_app`: the bytes of the gateway's own answer (BENCH_BODY_FILE), from memory.

Run as `python -m uvicorn bench.gateway_floor:<app>` with BENCH_* variables.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import asyncpg

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

SECRET = os.environ.get("BENCH_SECRET", "").encode()
JSON = [(b"content-type", b"application/json")]


async def _lifespan(receive: Receive, send: Send, startup: Callable[[], Awaitable[None]]) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await startup()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _nothing() -> None:
    return None


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": JSON})
    await send({"type": "http.response.body", "body": body})


async def hmac_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send, _nothing)
        return
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    signature = dict(scope["headers"]).get(b"x-hub-signature-256", b"")
    expected = b"sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest().encode()
    if hmac.compare_digest(expected, signature):
        await _answer(send, 202, b'{"status":"accepted"}')
    else:
        await _answer(send, 401, b'{"error":"signature"}')


ORGANIZATIONS_SQL = """
SELECT o.id, o.platform, o.name, o.external_id, o.avatar_url, o.is_personal, o.installation_id,
       o.status, o.installation_created_at, o.installation_updated_at,
       o.installation_suspended_at, o.installation_suspended_by, o.installation_permissions,
       o.created_at, o.modified_at,
       r.id AS r_id, r.external_id AS r_external_id, r.name AS r_name, r.description,
       r.is_private, r.is_fork, r.is_archived, r.stars, r.forks, r.watchers, r.open_issues,
       r.main_branch, r.topics, r.license, r.homepage, r.repository_created_at,
       r.repository_pushed_at, r.repository_modified_at, r.created_at AS r_created_at,
       r.modified_at AS r_modified_at
FROM organization.user_organizations m
JOIN organization.organizations o ON o.id = m.organization_id AND o.deleted_at IS NULL
LEFT JOIN repository.repositories r ON r.organization_id = o.id AND r.deleted_at IS NULL
WHERE m.user_id = $1
ORDER BY o.name, o.id, r.name
"""
_pool: Any = None


def _iso(value: Any) -> Any:
    return value.isoformat() if value is not None else None


async def _open_pool() -> None:
    global _pool

    async def init(conn: Any) -> None:  # JSONB as values, as the services return them
        await conn.set_type_codec(
            "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )

    _pool = await asyncpg.create_pool(
        os.environ["BENCH_DATABASE_URL"], min_size=10, max_size=10, init=init
    )


async def organizations_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send, _open_pool)
        return
    rows = await _pool.fetch(ORGANIZATIONS_SQL, os.environ["BENCH_USER_ID"])
    items: dict[str, dict[str, Any]] = {}
    for row in rows:
        org = items.get(str(row["id"]))
        if org is None:
            org = items[str(row["id"])] = {
                "id": str(row["id"]),
                "platform": str(row["platform"]),
                "name": row["name"],
                "external_id": row["external_id"],
                "avatar_url": row["avatar_url"],
                "is_personal": row["is_personal"],
                "installation_id": row["installation_id"],
                "status": str(row["status"]),
                "installation_created_at": _iso(row["installation_created_at"]),
                "installation_updated_at": _iso(row["installation_updated_at"]),
                "installation_suspended_at": _iso(row["installation_suspended_at"]),
                "installation_suspended_by": row["installation_suspended_by"],
                "installation_permissions": row["installation_permissions"],
                "created_at": _iso(row["created_at"]),
                "modified_at": _iso(row["modified_at"]),
                "repositories": [],
            }
        if row["r_id"] is not None:
            org["repositories"].append(
                {
                    "id": str(row["r_id"]),
                    "platform": "github",
                    "organization_id": org["id"],
                    "external_id": row["r_external_id"],
                    "name": row["r_name"],
                    "description": row["description"],
                    "is_private": row["is_private"],
                    "is_fork": row["is_fork"],
                    "is_archived": row["is_archived"],
                    "stars": row["stars"],
                    "forks": row["forks"],
                    "watchers": row["watchers"],
                    "open_issues": row["open_issues"],
                    "main_branch": row["main_branch"],
                    "topics": row["topics"],
                    "license": row["license"],
                    "homepage": row["homepage"],
                    "repository_created_at": _iso(row["repository_created_at"]),
                    "repository_pushed_at": _iso(row["repository_pushed_at"]),
                    "repository_modified_at": _iso(row["repository_modified_at"]),
                    "created_at": _iso(row["r_created_at"]),
                    "modified_at": _iso(row["r_modified_at"]),
                }
            )
    body = json.dumps({"items": list(items.values()), "next_cursor": None}).encode()
    await _answer(send, 200, body)


_body = b""


async def _read_body() -> None:
    global _body
    with open(os.environ["BENCH_BODY_FILE"], "rb") as file:  # noqa: ASYNC230 - at start-up
        _body = file.read()


async def memory_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The same bytes as the gateway's answer, from memory: the most any ASGI endpoint can
    do here."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send, _read_body)
        return
    await _answer(send, 200, _body)
