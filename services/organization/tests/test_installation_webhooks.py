"""Every installation payload of polar_dev's fixtures/github, from JetStream to the database.

The payloads are the recorded ones; a test may give an installation fresh ids (so tests do
not share rows) or synthesize a sibling event from a recorded installation object.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from nats.js import JetStreamContext
from polar_db.models import OrganizationStatus, OutboxEvent
from polar_db.models.organization import Organization, UserOrganization
from polar_kit.consumer import Consumer
from polar_kit.nats import WEBHOOKS, ensure_streams
from polar_kit.parked import list_parked, replay
from polar_organization.app import consumers
from polar_organization.settings import OrganizationSettings
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

_ids = itertools.count(50_000_000)


@pytest.fixture(scope="module")
async def consumer(
    settings: OrganizationSettings,
    js: JetStreamContext,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[tuple[Consumer, JetStreamContext.PullSubscription]]:
    await ensure_streams(js, settings)
    [installations] = consumers(settings, js, sessionmaker)
    sub = await installations.setup()
    yield installations, sub
    await sub.unsubscribe()


class Webhooks:
    def __init__(
        self,
        js: JetStreamContext,
        settings: OrganizationSettings,
        fixtures: Path,
        consumer: tuple[Consumer, JetStreamContext.PullSubscription],
    ) -> None:
        self.js, self.settings, self.fixtures = js, settings, fixtures
        self.consumer, self.sub = consumer

    def load(self, name: str, *, fresh_ids: bool = True) -> dict[str, Any]:
        payload: dict[str, Any] = json.loads(
            (self.fixtures / "webhooks" / "installation" / name).read_text()
        )
        if fresh_ids:
            n = next(_ids)
            payload["installation"]["id"] = n
            payload["installation"]["account"]["id"] = n
            payload["installation"]["account"]["login"] = f"acct-{n}"
        return payload

    async def send(
        self, payload: dict[str, Any], *, delivery: str | None = None, data: bytes | None = None
    ) -> str:
        delivery = delivery or str(uuid.uuid4())
        subject = f"{self.settings.nats_prefix}github.webhook.installation.{payload['action']}"
        await self.js.publish(
            subject,
            data if data is not None else json.dumps(payload).encode(),
            headers={
                "Nats-Msg-Id": delivery,
                "X-GitHub-Delivery": delivery,
                "X-GitHub-Event": "installation",
            },
        )
        return delivery

    async def drain(self, within: float = 15) -> None:
        """Process until the consumer has nothing pending (retries with delays included)."""
        stream = WEBHOOKS.stream_name(self.settings.nats_prefix)
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            try:
                for msg in await self.sub.fetch(10, timeout=0.3):
                    await self.consumer.process(msg)
            except TimeoutError:
                info = await self.js.consumer_info(stream, self.consumer.name)
                if info.num_pending == 0 and info.num_ack_pending == 0:
                    return
        raise AssertionError("consumer did not settle")


@pytest.fixture
def webhooks(
    js: JetStreamContext,
    settings: OrganizationSettings,
    github_fixtures: Path,
    consumer: tuple[Consumer, JetStreamContext.PullSubscription],
) -> Webhooks:
    return Webhooks(js, settings, github_fixtures, consumer)


def as_action(payload: dict[str, Any], action: str, **installation: Any) -> dict[str, Any]:
    """A sibling event of a recorded one: same installation, another action."""
    other = copy.deepcopy(payload)
    other["action"] = action
    other["installation"].update(installation)
    return other


async def org_of(
    sessionmaker: async_sessionmaker[AsyncSession], installation_id: int
) -> Organization | None:
    async with sessionmaker() as session:
        org: Organization | None = await session.scalar(
            sa.select(Organization).where(Organization.installation_id == installation_id)
        )
        return org


async def events_of(sessionmaker: async_sessionmaker[AsyncSession], org: Organization) -> list[str]:
    async with sessionmaker() as session:
        rows = await session.execute(
            sa.select(OutboxEvent.subject, OutboxEvent.payload).order_by(OutboxEvent.seq)
        )
        return [s.rsplit(".", 1)[1] for s, p in rows if str(org.id).encode() in p]


async def test_created_mirrors_the_installation(
    webhooks: Webhooks, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    payload = webhooks.load("created.payload.json", fresh_ids=False)
    await webhooks.send(payload)
    await webhooks.drain()
    org = await org_of(sessionmaker, 957387)
    assert org is not None
    assert (org.name, org.external_id) == ("Codertocat", 21031067)
    assert org.status == OrganizationStatus.active
    assert org.is_personal  # target_type User
    assert org.installation_permissions == payload["installation"]["permissions"]
    assert org.installation_created_at is not None
    assert org.installation_created_at.timestamp() == 1557933591

    # The same installation again, with the requester: same row, no duplicate.
    await webhooks.send(webhooks.load("created.with-requester.payload.json", fresh_ids=False))
    await webhooks.drain()
    async with sessionmaker() as session:
        count = await session.scalar(
            sa.select(sa.func.count()).where(Organization.external_id == 21031067)
        )
    assert count == 1
    assert (await events_of(sessionmaker, org))[0] == "created"


async def test_redelivery_is_processed_once(
    webhooks: Webhooks, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    payload = webhooks.load("created.payload.json")
    delivery = await webhooks.send(payload)
    await webhooks.send(payload, delivery=delivery)  # JetStream drops it: same Nats-Msg-Id
    # A copy that slipped past the duplicate window: new Nats-Msg-Id, same GitHub delivery.
    await webhooks.js.publish(
        f"{webhooks.settings.nats_prefix}github.webhook.installation.created",
        json.dumps(payload).encode(),
        headers={"Nats-Msg-Id": f"{delivery}-again", "Polar-Message-Id": delivery},
    )
    await webhooks.drain()
    org = await org_of(sessionmaker, payload["installation"]["id"])
    assert org is not None
    assert await events_of(sessionmaker, org) == ["created"]


async def test_new_permissions_accepted(
    webhooks: Webhooks, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    accepted = webhooks.load("new_permissions_accepted.payload.json")
    created = as_action(accepted, "created", permissions={"issues": "read"})
    # Out of order: the permissions arrive first and wait for the installation.
    await webhooks.send(accepted)
    await webhooks.send(created)
    await webhooks.drain()
    org = await org_of(sessionmaker, accepted["installation"]["id"])
    assert org is not None
    assert org.installation_permissions == accepted["installation"]["permissions"]
    assert await events_of(sessionmaker, org) == ["created", "updated"]


async def test_suspend_and_unsuspend(
    webhooks: Webhooks, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    suspend = webhooks.load("suspend.payload.json")
    installation_id = suspend["installation"]["id"]
    created = as_action(
        suspend,
        "created",
        suspended_at=None,
        suspended_by=None,
        updated_at=suspend["installation"]["created_at"],
    )
    await webhooks.send(created)
    await webhooks.send(suspend)
    await webhooks.drain()
    org = await org_of(sessionmaker, installation_id)
    assert org is not None
    assert org.status == OrganizationStatus.suspended
    assert org.installation_suspended_by == "Codertocat"
    assert org.installation_suspended_at is not None
    assert org.installation_suspended_at.isoformat() == "2021-04-29T02:32:50+00:00"

    unsuspend = webhooks.load("unsuspend.payload.json", fresh_ids=False)
    unsuspend["installation"].update(
        suspend["installation"] | {"suspended_at": None, "suspended_by": None}
    )
    await webhooks.send(unsuspend)
    await webhooks.drain()
    org = await org_of(sessionmaker, installation_id)
    assert org is not None
    assert org.status == OrganizationStatus.active
    assert org.installation_suspended_at is None
    assert await events_of(sessionmaker, org) == ["created", "suspended", "unsuspended"]


async def test_reordered_deliveries_reach_the_same_state(
    webhooks: Webhooks, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    suspend = webhooks.load("suspend.payload.json")
    created = as_action(
        suspend,
        "created",
        suspended_at=None,
        suspended_by=None,
        updated_at=suspend["installation"]["created_at"],
    )
    # Suspension first (installation unknown: retried), then the older creation, then a
    # redelivered creation: the newer suspension must win every time.
    await webhooks.send(suspend)
    await webhooks.send(created)
    await webhooks.drain()
    await webhooks.send(created)
    await webhooks.drain()
    org = await org_of(sessionmaker, suspend["installation"]["id"])
    assert org is not None
    assert org.status == OrganizationStatus.suspended


async def test_deleted_leaves_a_tombstone_that_late_deliveries_cannot_revive(
    webhooks: Webhooks, sessionmaker: async_sessionmaker[AsyncSession], make_user: Any
) -> None:
    deleted = webhooks.load("deleted.payload.json")
    created = as_action(deleted, "created")
    # The installer has signed in to Polar, so the creation makes them a member.
    github_id = next(_ids)
    user_id = uuid.UUID((await make_user(github_user_id=github_id)).user.id)
    created["sender"] = {**deleted["sender"], "id": github_id}
    await webhooks.send(created)
    await webhooks.drain()
    org = await org_of(sessionmaker, deleted["installation"]["id"])
    assert org is not None
    assert org.deleted_at is None
    async with sessionmaker() as session:
        assert await session.get(UserOrganization, (user_id, org.id)) is not None

    await webhooks.send(deleted)
    await webhooks.drain()
    await webhooks.send(created)  # a late redelivery (new delivery id) of the creation
    await webhooks.drain()
    org = await org_of(sessionmaker, deleted["installation"]["id"])
    assert org is not None
    assert org.deleted_at is not None
    assert org.status == OrganizationStatus.inactive
    async with sessionmaker() as session:
        assert await session.get(UserOrganization, (user_id, org.id)) is None
    assert await events_of(sessionmaker, org) == [
        "created",
        "member_added",
        "member_removed",
        "deleted",
    ]


async def test_installer_who_signed_in_becomes_a_member(
    webhooks: Webhooks, sessionmaker: async_sessionmaker[AsyncSession], make_user: Any
) -> None:
    created = webhooks.load("created.payload.json")
    github_id = next(_ids)
    user = (await make_user(github_user_id=github_id)).user
    created["sender"]["id"] = github_id
    await webhooks.send(created)
    await webhooks.drain()
    org = await org_of(sessionmaker, created["installation"]["id"])
    assert org is not None
    async with sessionmaker() as session:
        member = await session.get(UserOrganization, (uuid.UUID(user.id), org.id))
    assert member is not None


async def test_unknown_installation_waits_then_is_parked_then_replayed(
    webhooks: Webhooks,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: OrganizationSettings,
) -> None:
    deleted = webhooks.load("deleted.payload.json", fresh_ids=False)  # installation 2: unknown
    delivery = await webhooks.send(deleted)
    await webhooks.drain()
    parked = [p for p in await list_parked(webhooks.js, settings) if p.message_id == delivery]
    assert len(parked) == 1
    assert parked[0].consumer == "organization-installations"
    # Waited for its installation for consumer_wait_max_seconds, however many attempts.
    assert int(parked[0].attempts) > settings.consumer_max_attempts
    assert parked[0].error.startswith("still waiting after")
    assert "not known yet" in parked[0].error
    assert json.loads(parked[0].data) == deleted

    # The installation becomes known; the operator replays the parked delivery.
    await webhooks.send(as_action(deleted, "created"))
    await webhooks.drain()
    await replay(webhooks.js, settings, parked[0].seq)
    await webhooks.drain()
    org = await org_of(sessionmaker, 2)
    assert org is not None
    assert org.deleted_at is not None
    assert not [p for p in await list_parked(webhooks.js, settings) if p.message_id == delivery]


async def test_malformed_delivery_is_parked_at_once(
    webhooks: Webhooks, settings: OrganizationSettings
) -> None:
    delivery = await webhooks.send({"action": "created"}, data=b"{not json")
    no_installation = await webhooks.send({"action": "suspend", "sender": {}})
    await webhooks.drain()
    parked = {p.message_id: p for p in await list_parked(webhooks.js, settings)}
    assert parked[delivery].attempts == "1"
    assert parked[delivery].error.startswith("rejected")
    assert parked[no_installation].attempts == "1"
