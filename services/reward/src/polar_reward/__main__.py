"""`python -m polar_reward`: gRPC server, consumers of the repository service's events,
outbox relay and retention."""

from __future__ import annotations

import asyncio

from polar_db.engine import create_engine, create_sessionmaker
from polar_db.models.reward import SCHEMA
from polar_kit.grpc import serve
from polar_kit.logging import configure_logging
from polar_kit.nats import connect, ensure_streams
from polar_kit.outbox import OutboxRelay
from polar_kit.retention import Pruner
from polar_kit.tracing import configure_tracing

from .app import consumers, service_spec
from .directory import GrpcDirectory
from .settings import RewardSettings


async def main() -> None:
    settings = RewardSettings()
    configure_logging(settings.log_level, settings.log_json)
    configure_tracing("polar-reward", settings.trace_dir)
    # As its role, within its schema (decision 0021).
    engine = create_engine(settings.database_url, owner=SCHEMA, role=settings.database_role)
    sessionmaker = create_sessionmaker(engine)
    nc = await connect(settings, name="polar-reward")
    js = nc.jetstream()
    await ensure_streams(js, settings)
    # Refuses to start without real credentials for its calls outside development mode.
    directory = GrpcDirectory(settings)
    try:
        await serve(
            port=settings.reward_grpc_port,
            services=[service_spec(directory)],
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
    finally:
        await directory.close()


if __name__ == "__main__":
    asyncio.run(main())
