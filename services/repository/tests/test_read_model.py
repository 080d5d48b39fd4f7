"""The repository service's copy of the organization service's organizations (known.py):
what docs/consistency.md promises, one test per promise."""

from __future__ import annotations

import copy
import itertools
import json
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from polar.organization.v1 import events_pb2 as organization_events
from polar.organization.v1 import organization_pb2
from polar_db import ids
from polar_db.models.repository import KnownOrganization, Repository
from polar_kit.consumer import Delivery
from polar_kit.metrics import READ_MODEL_GAPS
from polar_repository.consumers import on_organization_events, on_webhooks
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

Sessionmaker = async_sessionmaker[AsyncSession]
WEBHOOKS = Path(__file__).resolve().parents[3] / "libs/polar_dev/src/polar_dev/fixtures/github"
_ids = itertools.count(70_000_000)


def installation_created() -> dict[str, Any]:
    """The recorded installation.created, renumbered: a new account, installation and
    repository for each test."""
    payload: dict[str, Any] = json.loads(
        (WEBHOOKS / "webhooks/installation/created.payload.json").read_text()
    )
    payload = copy.deepcopy(payload)
    account = next(_ids)
    payload["installation"]["id"] = next(_ids)
    payload["installation"]["account"] |= {"id": account, "login": f"acct-{account}"}
    for repo in payload["repositories"]:
        repo["id"] = next(_ids)
    return payload


def delivery(subject: str, data: bytes) -> Delivery:
    return Delivery(
        subject=subject,
        data=data,
        headers={},
        message_id=str(uuid.uuid4()),
        num_delivered=1,
        stream_sequence=1,
    )


async def webhook(sessionmaker: Sessionmaker, event: str, payload: dict[str, Any]) -> None:
    subject = f"github.webhook.{event}.{payload['action']}"
    async with sessionmaker.begin() as session:
        assert await on_webhooks(session, [delivery(subject, json.dumps(payload).encode())]) == {}


def organization(payload: dict[str, Any], version: int, **fields: Any) -> Any:
    account = payload["installation"]["account"]
    values = {
        "id": str(ids.organization_id("github", account["id"])),
        "name": account["login"],
        "external_id": account["id"],
        "installation_id": payload["installation"]["id"],
        "status": organization_pb2.ORGANIZATION_STATUS_ACTIVE,
        "version": version,
    }
    return organization_pb2.Organization(**(values | fields))


async def event(sessionmaker: Sessionmaker, subject: str, message: Any) -> None:
    async with sessionmaker.begin() as session:
        outcome = await on_organization_events(
            session, [delivery(subject, message.SerializeToString())]
        )
        assert outcome == {}


async def updated(sessionmaker: Sessionmaker, org: Any) -> None:
    message = organization_events.OrganizationUpdated(organization=org)
    await event(sessionmaker, "polar.organization.v1.updated", message)


async def known(sessionmaker: Sessionmaker, payload: dict[str, Any]) -> KnownOrganization:
    async with sessionmaker() as session:
        row = await session.scalar(
            sa.select(KnownOrganization).where(
                KnownOrganization.external_id == payload["installation"]["account"]["id"]
            )
        )
    assert row is not None
    return row


async def repositories(sessionmaker: Sessionmaker, payload: dict[str, Any]) -> list[Repository]:
    async with sessionmaker() as session:
        return list(
            await session.scalars(
                sa.select(Repository).where(
                    Repository.external_id.in_([r["id"] for r in payload["repositories"]])
                )
            )
        )


async def test_installation_before_the_organization_event(sessionmaker: Sessionmaker) -> None:
    """The repositories are stored on the first attempt under the derived id; the
    organization service's event then confirms the copy, changing no repository."""
    payload = installation_created()
    await webhook(sessionmaker, "installation", payload)
    derived = ids.organization_id("github", payload["installation"]["account"]["id"])
    repos = await repositories(sessionmaker, payload)
    assert [r.organization_id for r in repos] == [derived] * len(payload["repositories"])
    assert (await known(sessionmaker, payload)).version == 0

    created = organization_events.OrganizationCreated(organization=organization(payload, 1))
    await event(sessionmaker, "polar.organization.v1.created", created)
    row = await known(sessionmaker, payload)
    assert (row.id, row.version, row.status) == (derived, 1, "active")
    assert [r.organization_id for r in await repositories(sessionmaker, payload)] == [
        r.organization_id for r in repos
    ]


async def test_older_and_repeated_events_change_nothing(sessionmaker: Sessionmaker) -> None:
    payload = installation_created()
    suspended = organization(
        payload, 2, status=organization_pb2.ORGANIZATION_STATUS_SUSPENDED, name="renamed"
    )
    await updated(sessionmaker, suspended)
    await updated(sessionmaker, organization(payload, 1))  # older, arriving late
    await updated(sessionmaker, suspended)  # a redelivery
    row = await known(sessionmaker, payload)
    assert (row.version, row.status, row.name) == (2, "suspended", "renamed")


async def test_a_gap_heals_with_the_next_event(sessionmaker: Sessionmaker) -> None:
    payload = installation_created()
    gaps = READ_MODEL_GAPS.labels("known_organizations")
    before = gaps._value.get()
    await updated(sessionmaker, organization(payload, 1))
    # Version 2 is missed (or late): version 3 carries the whole organization.
    await updated(sessionmaker, organization(payload, 3, name="third"))
    assert gaps._value.get() == before + 1
    row = await known(sessionmaker, payload)
    assert (row.version, row.name) == (3, "third")
    await updated(sessionmaker, organization(payload, 2, name="second"))  # the late one
    assert (await known(sessionmaker, payload)).name == "third"


async def test_deletion_while_repositories_are_written(sessionmaker: Sessionmaker) -> None:
    """Written before the deletion: swept by it. After: dropped, however late."""
    payload = installation_created()
    await webhook(sessionmaker, "installation", payload)
    account = payload["installation"]["account"]
    deleted = organization_events.OrganizationDeleted(
        organization_id=str(ids.organization_id("github", account["id"])),
        external_id=account["id"],
        installation_id=payload["installation"]["id"],
        name=account["login"],
        version=2,
    )
    await event(sessionmaker, "polar.organization.v1.deleted", deleted)
    assert all(r.deleted_at is not None for r in await repositories(sessionmaker, payload))

    late = copy.deepcopy(payload)  # a redelivered installation.created, or a later add
    late["repositories"].append({"id": next(_ids), "name": "late", "private": False})
    await webhook(sessionmaker, "installation", late)
    repos = await repositories(sessionmaker, late)
    assert len(repos) == len(payload["repositories"])  # the late one was not written
    assert all(r.deleted_at is not None for r in repos)
    assert (await known(sessionmaker, payload)).deleted_at is not None
