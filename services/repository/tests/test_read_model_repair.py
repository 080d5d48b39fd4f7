"""The read model of organizations repaired by RPC (read_model.py): the real organization
service in-process, called over a real gRPC channel with the repository service's own
identity, both services on the real database (each as its role, in its schema)."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import sqlalchemy as sa
from nats.js import JetStreamContext
from polar.organization.v1 import events_pb2 as organization_events
from polar.organization.v1 import organization_pb2
from polar.organization.v1 import organization_service_pb2 as org_pb
from polar_db.models.organization import SCHEMA as ORGANIZATION
from polar_db.models.organization import Organization
from polar_db.models.repository import KnownOrganization
from polar_kit.consumer import Delivery
from polar_kit.grpc import RunningServer, run_until_signal, start_server
from polar_organization.app import service_spec as organization_spec
from polar_organization.github import Installation
from polar_organization.service import upsert_installation
from polar_organization.settings import OrganizationSettings
from polar_repository import app, read_model
from polar_repository.consumers import on_organization_events
from polar_repository.read_model import REPAIRS, Repairer, organization_stub
from polar_repository.settings import RepositorySettings
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

if TYPE_CHECKING:
    from polar.organization.v1.organization_service_pb2_grpc import OrganizationServiceAsyncStub

Sessionmaker = async_sessionmaker[AsyncSession]
_ids = itertools.count(85_000_000)  # account ids; ranges are disjoint across modules: one database
_STATUS = {
    organization_pb2.ORGANIZATION_STATUS_ACTIVE: "active",
    organization_pb2.ORGANIZATION_STATUS_SUSPENDED: "suspended",
    organization_pb2.ORGANIZATION_STATUS_INACTIVE: "inactive",
}


@pytest.fixture(scope="session")
async def organization_server(
    settings_env: dict[str, str], service_sessionmakers: dict[str, Sessionmaker]
) -> AsyncIterator[RunningServer]:
    env = {k.removeprefix("POLAR_").lower(): v for k, v in settings_env.items()}
    running = await start_server(
        port=0,
        host="127.0.0.1",
        services=[organization_spec(OrganizationSettings.model_validate(env))],
        sessionmaker=service_sessionmakers[ORGANIZATION],
        settings=OrganizationSettings.model_validate(env),
    )
    yield running
    await running.stop(None)


@pytest.fixture(scope="session")
def repair_settings(
    settings: RepositorySettings, organization_server: RunningServer
) -> RepositorySettings:
    return settings.model_copy(
        update={"organization_grpc_target": f"127.0.0.1:{organization_server.port}"}
    )


@pytest.fixture
async def org_stub(
    repair_settings: RepositorySettings,
) -> AsyncIterator[OrganizationServiceAsyncStub]:
    """The organization service as the repository service calls it (its identity)."""
    ch, stub = organization_stub(repair_settings)
    yield stub
    await ch.close()


@pytest.fixture
def org_sessionmaker(service_sessionmakers: dict[str, Sessionmaker]) -> Sessionmaker:
    return service_sessionmakers[ORGANIZATION]


async def make_organization(org_sessionmaker: Sessionmaker) -> uuid.UUID:
    """An organization of the organization service (its own write path)."""
    n = next(_ids)
    installation = Installation(
        id=n,
        account_id=n,
        account_login=f"repair-{n}",
        account_avatar_url=None,
        is_personal=False,
        created_at=None,
        updated_at=None,
        suspended_at=None,
        suspended_by=None,
        permissions={},
    )
    async with org_sessionmaker.begin() as session:
        org = await upsert_installation(session, installation)
        assert org is not None
        return org.id


async def set_upstream(org_sessionmaker: Sessionmaker, id: uuid.UUID, **values: Any) -> None:
    async with org_sessionmaker.begin() as session:
        await session.execute(sa.update(Organization).where(Organization.id == id).values(**values))


async def upstream(stub: OrganizationServiceAsyncStub, id: uuid.UUID) -> tuple[Any, ...]:
    org = (await stub.GetOrganization(org_pb.GetOrganizationRequest(id=str(id)))).organization
    return (
        org.name,
        org.external_id,
        org.installation_id or None,
        _STATUS[org.status],
        org.version,
    )


async def held(sessionmaker: Sessionmaker, id: uuid.UUID) -> tuple[Any, ...] | None:
    async with sessionmaker() as session:
        row = await session.get(KnownOrganization, id)
        if row is None:
            return None
        return (row.name, row.external_id, row.installation_id, row.status.value, row.version)


def delivery(message: organization_events.OrganizationUpdated) -> Delivery:
    return Delivery(
        subject="polar.organization.v1.updated",
        data=message.SerializeToString(),
        headers={},
        message_id=str(uuid.uuid4()),
        num_delivered=1,
        stream_sequence=1,
    )


async def apply_after_gap(
    sessionmaker: Sessionmaker,
    repairer: Repairer,
    base: organization_pb2.Organization,
    ahead: int,
    name: str | None = None,
) -> None:
    """`base`, `ahead` versions on (a gap when more than one), through the consumer with
    `repairer` on call; returns once the repair it triggers has ended."""
    skipped = organization_pb2.Organization()
    skipped.CopyFrom(base)
    skipped.version = base.version + ahead
    if name is not None:
        skipped.name = name
    async with sessionmaker.begin() as session:
        outcome = await on_organization_events(
            session,
            [delivery(organization_events.OrganizationUpdated(organization=skipped))],
            repair=repairer.schedule,
        )
    assert outcome == {}
    await repairer.close()


def repairs(outcome: str) -> float:
    return float(REPAIRS.labels("known_organizations", outcome)._value.get())


async def test_rebuild_writes_back_deleted_and_damaged_rows(
    sessionmaker: Sessionmaker,
    org_sessionmaker: Sessionmaker,
    org_stub: OrganizationServiceAsyncStub,
    repair_settings: RepositorySettings,
) -> None:
    lost, damaged = [await make_organization(org_sessionmaker) for _ in range(2)]
    listed, written = await read_model.rebuild(sessionmaker, org_stub, deadline=5)
    assert listed >= 2
    assert written >= 2
    for id in (lost, damaged):
        assert await held(sessionmaker, id) == await upstream(org_stub, id)

    async with sessionmaker.begin() as session:
        await session.execute(sa.delete(KnownOrganization).where(KnownOrganization.id == lost))
        await session.execute(
            sa.update(KnownOrganization)
            .where(KnownOrganization.id == damaged)
            .values(name="damaged", installation_id=None, status="suspended")
        )
    assert await held(sessionmaker, lost) is None

    await read_model.rebuild(sessionmaker, org_stub, deadline=5)

    for id in (lost, damaged):
        assert await held(sessionmaker, id) == await upstream(org_stub, id)


async def test_rebuild_of_one_organization(
    sessionmaker: Sessionmaker,
    org_sessionmaker: Sessionmaker,
    org_stub: OrganizationServiceAsyncStub,
) -> None:
    id = await make_organization(org_sessionmaker)
    assert await read_model.refresh_organization(sessionmaker, org_stub, id, deadline=5)
    assert await held(sessionmaker, id) == await upstream(org_stub, id)
    assert (
        await read_model.refresh_organization(sessionmaker, org_stub, uuid.uuid4(), deadline=5)
        is None
    )


async def test_the_operator_command_rebuilds_one_organization(
    sessionmaker: Sessionmaker,
    org_sessionmaker: Sessionmaker,
    org_stub: OrganizationServiceAsyncStub,
    settings_env: dict[str, str],
    organization_server: RunningServer,
) -> None:
    id = await make_organization(org_sessionmaker)
    assert await held(sessionmaker, id) is None
    command = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "polar_repository.read_model",
        "rebuild",
        "--organization",
        str(id),
        env=os.environ
        | settings_env
        | {"POLAR_ORGANIZATION_GRPC_TARGET": f"127.0.0.1:{organization_server.port}"},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await command.communicate()
    assert command.returncode == 0
    assert out.decode().strip() == "written"
    assert await held(sessionmaker, id) == await upstream(org_stub, id)


async def test_an_older_answer_never_overwrites_a_newer_row(
    sessionmaker: Sessionmaker,
    org_sessionmaker: Sessionmaker,
    org_stub: OrganizationServiceAsyncStub,
) -> None:
    id = await make_organization(org_sessionmaker)
    await set_upstream(org_sessionmaker, id, version=5, name="upstream-5")
    assert await read_model.refresh_organization(sessionmaker, org_stub, id, deadline=5)
    # An event newer than the organization service's answer (applied meanwhile).
    async with sessionmaker.begin() as session:
        await session.execute(
            sa.update(KnownOrganization)
            .where(KnownOrganization.id == id)
            .values(version=9, name="event-9")
        )

    assert not await read_model.refresh_organization(sessionmaker, org_stub, id, deadline=5)
    await read_model.rebuild(sessionmaker, org_stub, deadline=5)

    row = await held(sessionmaker, id)
    assert row is not None
    assert (row[0], row[4]) == ("event-9", 9)


async def test_a_gap_asks_the_organization_service(
    sessionmaker: Sessionmaker,
    org_sessionmaker: Sessionmaker,
    org_stub: OrganizationServiceAsyncStub,
    repair_settings: RepositorySettings,
) -> None:
    id = await make_organization(org_sessionmaker)
    assert await read_model.refresh_organization(sessionmaker, org_stub, id, deadline=5)
    base = (await org_stub.GetOrganization(org_pb.GetOrganizationRequest(id=str(id)))).organization
    # The organization service moved on twice more than the event that reaches us says.
    await set_upstream(org_sessionmaker, id, version=base.version + 4, name="upstream-latest")
    before = repairs("applied")
    await apply_after_gap(
        sessionmaker, Repairer(sessionmaker, repair_settings), base, 2, "event-after-a-gap"
    )

    assert repairs("applied") == before + 1
    assert await held(sessionmaker, id) == await upstream(org_stub, id)
    row = await held(sessionmaker, id)
    assert row is not None
    assert (row[0], row[4]) == ("upstream-latest", base.version + 4)


async def test_a_failed_repair_is_counted_and_the_event_still_applied(
    sessionmaker: Sessionmaker,
    org_sessionmaker: Sessionmaker,
    org_stub: OrganizationServiceAsyncStub,
    repair_settings: RepositorySettings,
) -> None:
    id = await make_organization(org_sessionmaker)
    assert await read_model.refresh_organization(sessionmaker, org_stub, id, deadline=5)
    base = (await org_stub.GetOrganization(org_pb.GetOrganizationRequest(id=str(id)))).organization
    # Nobody listens on port 1: the repair fails, the consumer does not.
    unreachable = repair_settings.model_copy(
        update={"organization_grpc_target": "127.0.0.1:1", "grpc_deadline_seconds": 0.5}
    )
    before = repairs("failed")
    await apply_after_gap(sessionmaker, Repairer(sessionmaker, unreachable), base, 3)

    assert repairs("failed") == before + 1
    row = await held(sessionmaker, id)
    assert row is not None
    assert row[4] == base.version + 3


async def test_the_repository_identity_may_only_read_organizations(
    org_stub: OrganizationServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await org_stub.DeleteOrganization(org_pb.DeleteOrganizationRequest(id=str(uuid.uuid4())))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


def repair_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("repair ")]


async def test_shutdown_lets_a_running_repair_finish(
    sessionmaker: Sessionmaker,
    org_sessionmaker: Sessionmaker,
    org_stub: OrganizationServiceAsyncStub,
    repair_settings: RepositorySettings,
    js: JetStreamContext,
) -> None:
    """The service's workers (app.consumers) include the Repairer: its shutdown waits for a
    repair in flight, then closes it; nothing is left pending, later gaps are not taken."""
    id = await make_organization(org_sessionmaker)
    workers = app.consumers(repair_settings, js, sessionmaker)
    [repairer] = [w for w in workers if isinstance(w, Repairer)]
    before = repairs("applied")
    repairer.schedule(id)
    assert [t.get_name() for t in repair_tasks()] == [f"repair {id}"]

    stop = asyncio.Event()
    stop.set()  # as a SIGTERM would
    await asyncio.wait_for(run_until_signal(None, workers=workers, stop=stop, grace=10), 60)

    assert repair_tasks() == []
    assert repairs("applied") == before + 1
    assert await held(sessionmaker, id) == await upstream(org_stub, id)
    repairer.schedule(await make_organization(org_sessionmaker))
    assert repair_tasks() == []


async def test_shutdown_cancels_a_repair_that_outlasts_the_grace(
    sessionmaker: Sessionmaker, repair_settings: RepositorySettings
) -> None:
    """A repair still waiting after the shutdown grace (an organization service that never
    answers) is cancelled with its worker, not left pending."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, never answers: the call waits for its deadline

    silent = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    settings = repair_settings.model_copy(
        update={"organization_grpc_target": f"127.0.0.1:{port}", "grpc_deadline_seconds": 600}
    )
    repairer = Repairer(sessionmaker, settings)
    failed = repairs("failed")
    try:
        repairer.schedule(uuid.uuid4())
        stop = asyncio.Event()
        stop.set()
        # polar_kit gives workers the grace plus 5 s, then cancels them.
        await asyncio.wait_for(run_until_signal(None, workers=[repairer], stop=stop, grace=0), 60)
        assert repair_tasks() == []
        assert repairs("failed") == failed  # cancelled, not a failure
    finally:
        silent.close()
