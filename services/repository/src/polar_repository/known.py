"""What this service knows of the organization service's organizations: its own read
model (decision 0021, docs/consistency.md), so no delivery waits for the other service.

- An installation webhook (installation, installation_repositories) naming an account this
  service has not heard of gets a provisional row at once: the organization's id is derived
  from the account id (polar_db.ids), as the organization service derives it, with version 0.
  Other webhooks (repository.*) need the account known here already, from its installation
  or the organization service's events; until then they wait (a delivery of this service's
  own, not one of the other service).
- The organization service's events carry the whole organization and its version; one
  whose version is not newer than the row's is ignored (repeats, reordering), a newer one
  replaces the row, and a jump of more than one is logged and counted as a gap: the event's
  full state heals the copy, nothing in between is needed; the organization is also asked
  for by RPC (read_model.py), in the background, in case a later change was missed too.
- A deleted organization keeps its row (deleted_at set): late deliveries about it are
  dropped. A new installation of the same account (another installation id) revives it, as
  the organization service does.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import structlog
from polar.organization.v1 import organization_pb2
from polar_db import ids
from polar_db.models import OrganizationStatus, Platform
from polar_db.models.repository import KnownOrganization
from polar_kit.metrics import READ_MODEL_GAPS
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from . import repository as repo

log = structlog.get_logger()

_STATUS = {
    organization_pb2.ORGANIZATION_STATUS_INACTIVE: OrganizationStatus.inactive,
    organization_pb2.ORGANIZATION_STATUS_ACTIVE: OrganizationStatus.active,
    organization_pb2.ORGANIZATION_STATUS_SUSPENDED: OrganizationStatus.suspended,
}


@dataclass(frozen=True, slots=True)
class Account:
    """A GitHub account as a webhook names it."""

    id: int
    login: str | None
    installation_id: int | None = None
    suspended: bool = False


class NotKnownYet(Exception):
    """Neither the account nor its installation is known here yet."""


async def organization_of(
    session: AsyncSession, account: Account, *, installed: bool
) -> KnownOrganization | None:
    """The organization of `account`; None when it is deleted. `installed`: the webhook is
    about an installation on the account, which makes it an organization (a provisional
    row is written, in the caller's transaction, when it is not known yet); otherwise an
    unknown account raises NotKnownYet."""
    row = await _by_external_id(session, account.id)
    if row is None and not installed and account.installation_id is not None:
        row = await session.scalar(
            sa.select(KnownOrganization)
            .where(KnownOrganization.installation_id == account.installation_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    if row is None:
        if not installed:
            raise NotKnownYet(f"account {account.id} / installation {account.installation_id}")
        if not account.login:
            raise ValueError(f"account {account.id} is not known and the webhook lacks its login")
        await session.execute(
            insert(KnownOrganization)
            .values(
                id=ids.organization_id(Platform.github, account.id),
                platform=Platform.github,
                external_id=account.id,
                name=account.login,
                installation_id=account.installation_id,
                status=OrganizationStatus.suspended
                if account.suspended
                else OrganizationStatus.active,
                version=0,
            )
            .on_conflict_do_nothing()
        )
        row = await _by_external_id(session, account.id)
        assert row is not None
    if row.deleted_at is not None:
        if (
            not installed
            or account.installation_id is None
            or account.installation_id == row.installation_id
        ):
            log.info("webhook for a deleted organization ignored", organization_id=str(row.id))
            return None
        # A new installation of the account: the organization service revives it too.
        row.deleted_at = None
        row.installation_id = account.installation_id
        row.status = OrganizationStatus.active
        await session.flush()
    return row


async def _by_external_id(session: AsyncSession, external_id: int) -> KnownOrganization | None:
    return await session.scalar(
        sa.select(KnownOrganization)
        .where(KnownOrganization.external_id == external_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


# Told the id of an organization whose events skipped versions (read_model.Repairer).
OnGap = Callable[[uuid.UUID], None]


async def apply_organization(
    session: AsyncSession,
    org: organization_pb2.Organization,
    *,
    deleted: bool = False,
    on_gap: OnGap | None = None,
    repair: bool = False,
) -> bool:
    """An event's organization (created, updated, suspended, unsuspended); False when it
    was not newer than what we hold. `repair`: the organization service's answer to an RPC
    (read_model.py), applied when not older than the row (an equal version rewrites a
    damaged row) and never counted as a gap."""
    values = {
        "id": uuid.UUID(org.id),
        "platform": Platform.github,
        "external_id": org.external_id,
        "name": org.name,
        "installation_id": org.installation_id or None,
        "status": _STATUS.get(org.status, OrganizationStatus.inactive),
        "version": org.version,
        "deleted_at": datetime.now(UTC) if deleted else None,
    }
    return await _apply(session, values, on_gap=on_gap, repair=repair)


async def apply_deleted(
    session: AsyncSession, organization_id: uuid.UUID, external_id: int, name: str, version: int
) -> bool:
    held = await session.get(KnownOrganization, organization_id, with_for_update=True)
    values = {
        "id": organization_id,
        "platform": Platform.github,
        "external_id": external_id,
        "name": name,
        "installation_id": held.installation_id if held else None,
        "status": held.status if held else OrganizationStatus.inactive,
        "version": version,
        "deleted_at": datetime.now(UTC),
    }
    return await _apply(session, values)


async def _apply(
    session: AsyncSession,
    values: dict[str, object],
    *,
    on_gap: OnGap | None = None,
    repair: bool = False,
) -> bool:
    held = await session.scalar(
        sa.select(KnownOrganization.version)
        .where(KnownOrganization.id == values["id"])
        .with_for_update()
    )
    version = int(str(values["version"]))
    if repair:
        if held is not None and version < held:
            return False  # the row is newer than the answer: never go backwards
    # Version 0: an organization service from before versions (a rolling upgrade): applied.
    elif held is not None and 0 < version <= held:
        return False  # a repeat or an older event
    elif held is not None and held > 0 and version > held + 1:
        READ_MODEL_GAPS.labels("known_organizations").inc()
        log.warning(
            "organization events missed; the newest state is applied",
            organization_id=str(values["id"]),
            held=held,
            received=version,
        )
        if on_gap is not None:
            on_gap(uuid.UUID(str(values["id"])))
    other = await session.scalar(
        sa.select(KnownOrganization.id).where(
            KnownOrganization.external_id == values["external_id"],
            KnownOrganization.id != values["id"],
            KnownOrganization.version == 0,
        )
    )
    if other is not None:  # provisional, under an id the organization service did not take
        await repo.rekey_organization(session, other, uuid.UUID(str(values["id"])))
    stmt = insert(KnownOrganization).values(**values)
    update: dict[str, Any] = {k: stmt.excluded[k] for k in values if k != "id"}
    update["modified_at"] = sa.func.now()
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["id"],
            set_=update,
            where=KnownOrganization.version <= stmt.excluded.version
            if repair
            else sa.or_(
                stmt.excluded.version == 0, KnownOrganization.version < stmt.excluded.version
            ),
        )
    )
    return True
