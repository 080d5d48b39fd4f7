"""Repair of this service's read model of organizations (known.py) by asking the
organization service over gRPC, with this service's own identity (GetOrganization,
ListOrganizations: all its allow-list grants). The events keep the copy; this heals one that
went wrong (docs/consistency.md):

- `python -m polar_repository.read_model rebuild [--organization ID]`: an operator's
  command; every organization the organization service lists (or one) is written back.
- `Repairer`: the consumer of the organization service's events tells it of an event that
  skipped versions (a gap); it asks for that organization in the background, so the
  consumer never waits for the other service, and a failure is logged and counted, never
  a parked message.

Both apply the answer with the version rule: a row holding a newer version than the answer
stays (the answer may be older than an event applied meanwhile). An organization the
organization service no longer returns (deleted) keeps its row: its deletion event says so.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from typing import TYPE_CHECKING

import grpc
import structlog
from polar.organization.v1 import organization_service_pb2 as org_pb
from polar.organization.v1.organization_service_pb2_grpc import OrganizationServiceStub
from polar_kit.grpc.auth import REPOSITORY, channel, credentials
from prometheus_client import Counter
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import known
from .settings import RepositorySettings

if TYPE_CHECKING:
    from polar.organization.v1.organization_service_pb2_grpc import OrganizationServiceAsyncStub

log = structlog.get_logger()

Sessionmaker = async_sessionmaker[AsyncSession]

REPAIRS = Counter(
    "polar_read_model_repairs_total",
    "Organizations of the read model asked for by RPC after a gap in their events, by "
    "outcome (applied, unchanged: the row was as new, absent: not found, failed).",
    ["model", "outcome"],
)


def organization_stub(
    settings: RepositorySettings,
) -> tuple[grpc.aio.Channel, OrganizationServiceAsyncStub]:
    ch = channel(settings.organization_grpc_target, credentials(REPOSITORY, settings))
    stub: OrganizationServiceAsyncStub = OrganizationServiceStub(ch)
    return ch, stub


async def refresh_organization(
    sessionmaker: Sessionmaker,
    stub: OrganizationServiceAsyncStub,
    organization_id: uuid.UUID,
    *,
    deadline: float,
) -> bool | None:
    """Writes the organization service's answer about one organization; None when it does
    not know it (or no longer: deleted), False when the row is as new or newer."""
    try:
        found = await stub.GetOrganization(
            org_pb.GetOrganizationRequest(id=str(organization_id)), timeout=deadline
        )
    except grpc.aio.AioRpcError as e:
        if e.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise
    async with sessionmaker.begin() as session:
        return await known.apply_organization(session, found.organization, repair=True)


async def rebuild(
    sessionmaker: Sessionmaker, stub: OrganizationServiceAsyncStub, *, deadline: float
) -> tuple[int, int]:
    """Writes every organization the organization service lists, page by page (one
    transaction each); (organizations listed, rows written)."""
    listed = written = 0
    token = ""
    while True:
        page = await stub.ListOrganizations(
            org_pb.ListOrganizationsRequest(page_size=100, page_token=token), timeout=deadline
        )
        async with sessionmaker.begin() as session:
            for org in page.organizations:
                listed += 1
                try:
                    async with session.begin_nested():
                        written += await known.apply_organization(session, org, repair=True)
                except IntegrityError:
                    # Another row holds its account (external id) under another id: a copy
                    # this command cannot reconcile alone; reported, the rest goes on.
                    log.error("read model row conflicts", organization_id=org.id)
        if not page.next_page_token:
            return listed, written
        token = page.next_page_token


class Repairer:
    """Asks for an organization whose events skipped versions, in the background (one
    request at a time per organization); `schedule` is the consumer's `repair` hook. A
    polar_kit Worker too, for its shutdown only (`run`)."""

    def __init__(self, sessionmaker: Sessionmaker, settings: RepositorySettings) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._stub: OrganizationServiceAsyncStub | None = None
        self._channel: grpc.aio.Channel | None = None
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._closed = False

    def schedule(self, organization_id: uuid.UUID) -> None:
        if self._closed:
            # Shutting down (a consumer's last message): the event's own state is applied;
            # the next gap of this organization, or `rebuild`, asks again.
            log.info("repair skipped: shutting down", organization_id=str(organization_id))
            return
        if organization_id in self._running:
            return
        task = asyncio.get_running_loop().create_task(
            self._repair(organization_id), name=f"repair {organization_id}"
        )
        self._running[organization_id] = task
        task.add_done_callback(lambda _: self._running.pop(organization_id, None))

    async def _repair(self, organization_id: uuid.UUID) -> None:
        if self._stub is None:  # made on the first gap, in the loop that uses it
            self._channel, self._stub = organization_stub(self._settings)
        try:
            applied = await refresh_organization(
                self._sessionmaker,
                self._stub,
                organization_id,
                deadline=self._settings.grpc_deadline_seconds,
            )
        except Exception:
            REPAIRS.labels("known_organizations", "failed").inc()
            log.exception("read model repair failed", organization_id=str(organization_id))
            return
        outcome = {None: "absent", True: "applied", False: "unchanged"}[applied]
        REPAIRS.labels("known_organizations", outcome).inc()
        log.info("read model repaired", organization_id=str(organization_id), outcome=outcome)

    async def wait(self) -> None:
        """Until the repairs scheduled so far have ended (tests, shutdown)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def close(self) -> None:
        """Takes no more repairs, waits for the running ones, closes the channel. Cancelled
        while waiting (polar_kit cancels a worker still busy after the shutdown grace), it
        cancels them."""
        self._closed = True
        try:
            await self.wait()
        finally:
            running = list(self._running.values())
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            if self._channel is not None:
                await self._channel.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`, then close. Running repairs are awaited, not cancelled: each is one
        RPC bounded by POLAR_GRPC_DEADLINE_SECONDS and one short transaction, well within the
        shutdown grace, and one cut short is not asked again until the organization's next
        gap."""
        await stop.wait()
        await self.close()


async def _main(args: argparse.Namespace) -> int:
    from polar_db.engine import create_engine, create_sessionmaker
    from polar_db.models.repository import SCHEMA

    settings = RepositorySettings()
    engine = create_engine(settings.database_url, owner=SCHEMA, role=settings.database_role)
    ch, stub = organization_stub(settings)
    try:
        sessionmaker = create_sessionmaker(engine)
        deadline = settings.grpc_deadline_seconds
        if args.organization:
            applied = await refresh_organization(
                sessionmaker, stub, uuid.UUID(args.organization), deadline=deadline
            )
            print({None: "not found", True: "written", False: "unchanged (as new)"}[applied])
        else:
            listed, written = await rebuild(sessionmaker, stub, deadline=deadline)
            print(f"{listed} organizations listed, {written} rows written")
    finally:
        await ch.close()
        await engine.dispose()
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m polar_repository.read_model rebuild [--organization ID]`: rewrite the
    read model of organizations from the organization service (never to an older version)."""
    parser = argparse.ArgumentParser(prog="python -m polar_repository.read_model")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser(
        "rebuild", help="rewrite known_organizations from the organization service"
    )
    cmd.add_argument("--organization", help="only this organization (its id)")
    return asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
