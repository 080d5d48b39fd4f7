"""Wiring shared by __main__ and the tests: the gRPC service, the GitHub sync and the consumers.

One sync runner per process: SyncRepository (the servicer) calls its `start(repository_id)`
(see service.SyncStarter), and __main__ runs it as a worker too, so a SIGTERM lets running
syncs finish their page. Tests pass their own starter to `service_spec`.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from polar.repository.v1 import repository_service_pb2, repository_service_pb2_grpc
from polar_kit.grpc import ServiceSpec, Worker
from polar_kit.grpc.auth import ALL, GATEWAY, OPERATOR, REWARD, AllowList
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import consumers as webhook_consumers
from .read_model import Repairer
from .refresh import Refresher
from .service import SyncStarter
from .servicer import RepositoryServicer
from .settings import RepositorySettings
from .sync import SyncRunner, sync_on_install_consumer

SERVICE_NAME = repository_service_pb2.DESCRIPTOR.services_by_name["RepositoryService"].full_name

# Who may call what (polar_kit.grpc.auth). The gateway reads; the reward service checks the
# issue a reward is put on (and the repository a list is of); repositories, issues and pull
# requests come from GitHub (webhooks, the sync), or from an operator. CreateReward and
# ListRewards are deprecated (decision 0027): nobody may call them, and they are not
# implemented (UNIMPLEMENTED).
CALLERS: AllowList = {
    GATEWAY: frozenset(
        {
            "GetRepository",
            "LookupRepository",
            "ListRepositories",
            "GetIssue",
            "ListIssues",
            "GetPullRequest",
            "ListPullRequests",
            "GetRepositorySyncState",
        }
    ),
    REWARD: frozenset({"GetIssue", "GetRepository"}),
    OPERATOR: ALL,
}


def sync_runner(
    settings: RepositorySettings, sessionmaker: async_sessionmaker[AsyncSession]
) -> SyncRunner:
    return SyncRunner.from_settings(settings, sessionmaker)


def service_spec(settings: RepositorySettings, sync: SyncStarter) -> ServiceSpec:
    return ServiceSpec(
        name=SERVICE_NAME,
        add_to_server=repository_service_pb2_grpc.add_RepositoryServiceServicer_to_server,
        servicer=RepositoryServicer(sync),
        callers=CALLERS,
    )


def consumers(
    settings: RepositorySettings,
    js: JetStreamContext,
    sessionmaker: async_sessionmaker[AsyncSession],
    sync: SyncRunner | None = None,
) -> list[Worker]:
    """The JetStream consumers of this service: webhooks, other domains' events and, given
    a sync runner, the sync of every repository it creates (started once the repository's
    row is committed, so the sync finds it); and the read model's Repairer, which they
    feed, so that it is closed at shutdown with them."""
    # Same-second ties are re-read from GitHub when the App is configured (refresh.py).
    refresher = Refresher.from_settings(settings, sessionmaker)
    refresh = refresher.refresh if refresher.configured else None
    # An organization whose events skipped versions is asked for by RPC (read_model.py).
    repairer = Repairer(sessionmaker, settings)
    found = webhook_consumers.consumers(
        settings, js, sessionmaker, refresh, repair=repairer.schedule
    )
    if sync is not None:
        found.append(sync_on_install_consumer(sync, settings, js, sessionmaker))
    return [*found, repairer]
