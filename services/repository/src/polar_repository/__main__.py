"""`python -m polar_repository`: gRPC server, webhook/event consumers, outbox relay and
retention."""

from __future__ import annotations

import asyncio

from polar_db.engine import create_engine, create_sessionmaker
from polar_db.models.repository import SCHEMA
from polar_kit.grpc import Worker, serve
from polar_kit.logging import configure_logging
from polar_kit.nats import connect, ensure_streams
from polar_kit.outbox import OutboxRelay
from polar_kit.retention import Pruner
from polar_kit.tracing import configure_tracing

from .app import consumers, service_spec, sync_runner
from .settings import RepositorySettings


async def main() -> None:
    settings = RepositorySettings()
    configure_logging(settings.log_level, settings.log_json)
    configure_tracing("polar-repository", settings.trace_dir)
    engine = create_engine(settings.database_url, owner=SCHEMA, role=settings.database_role)
    sessionmaker = create_sessionmaker(engine)
    nc = await connect(settings, name="polar-repository")
    js = nc.jetstream()
    await ensure_streams(js, settings)
    sync = sync_runner(settings, sessionmaker)
    # The sync runs as a worker too, so a SIGTERM lets running syncs finish their page.
    workers: list[Worker] = [
        *consumers(settings, js, sessionmaker, sync),
        OutboxRelay(sessionmaker, js, settings),
        Pruner(sessionmaker, settings),
        sync,
    ]
    await serve(
        port=settings.repository_grpc_port,
        services=[service_spec(settings, sync)],
        sessionmaker=sessionmaker,
        settings=settings,
        workers=workers,
        nc=nc,
        engine=engine,
    )


if __name__ == "__main__":
    asyncio.run(main())
