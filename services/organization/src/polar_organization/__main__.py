"""`python -m polar_organization`: gRPC server, installation consumer and outbox relay."""

from __future__ import annotations

import asyncio

from polar_db.engine import create_engine, create_sessionmaker
from polar_db.models.organization import SCHEMA
from polar_kit.grpc import serve
from polar_kit.logging import configure_logging
from polar_kit.nats import connect, ensure_streams
from polar_kit.outbox import OutboxRelay
from polar_kit.retention import Pruner
from polar_kit.tracing import configure_tracing

from .app import consumers, service_spec
from .settings import OrganizationSettings


async def main() -> None:
    settings = OrganizationSettings()
    configure_logging(settings.log_level, settings.log_json)
    configure_tracing("polar-organization", settings.trace_dir)
    engine = create_engine(settings.database_url, owner=SCHEMA, role=settings.database_role)
    sessionmaker = create_sessionmaker(engine)
    nc = await connect(settings, name="polar-organization")
    js = nc.jetstream()
    await ensure_streams(js, settings)
    await serve(
        port=settings.organization_grpc_port,
        services=[service_spec(settings)],
        sessionmaker=sessionmaker,
        settings=settings,
        workers=[
            *consumers(settings, js, sessionmaker),
            OutboxRelay(sessionmaker, js, settings),
            Pruner(sessionmaker, settings),
        ],
        nc=nc,
        engine=engine,
    )


if __name__ == "__main__":
    asyncio.run(main())
