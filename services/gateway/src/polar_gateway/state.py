"""What the routes share, built once per process (app.state.gateway)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from fastapi import Request
from nats.js import JetStreamContext

from .authz import Memberships
from .bus import Bus
from .clients import Clients
from .feed import Feed
from .limits import BodySlots
from .live import LiveStreams, watch_memberships
from .readmodel import UserOrganizations
from .sessions import ActiveSessions, Revocations, TokenSigner
from .settings import GatewaySettings


@dataclass
class Gateway:
    settings: GatewaySettings
    clients: Clients
    bus: Bus
    tokens: TokenSigner
    revocations: Revocations
    sessions: ActiveSessions
    memberships: Memberships
    live: LiveStreams
    feed: Feed
    read_model: UserOrganizations
    webhook_bodies: BodySlots
    github: httpx.AsyncClient  # sign-in only: token exchange and the user's profile

    @classmethod
    def create(cls, settings: GatewaySettings) -> Gateway:
        clients = Clients(settings)
        revocations = Revocations(settings)
        sessions = ActiveSessions(settings, revocations)
        live = LiveStreams(settings)
        revocations.listeners.append(live.session_revoked)  # logout ends the open streams
        memberships = Memberships(
            clients, ttl=settings.membership_cache_seconds, size=settings.membership_cache_size
        )
        bus = Bus(settings)

        async def watch_removals(js: JetStreamContext) -> None:
            assert bus.nc is not None
            await watch_memberships(bus.nc, settings, memberships, live)

        read_model = UserOrganizations(settings.read_model_users)
        feed = Feed(settings, live, read_model)
        bus.on_ready([revocations.setup, sessions.setup, watch_removals, feed.start])
        return cls(
            settings=settings,
            clients=clients,
            bus=bus,
            tokens=TokenSigner(settings),
            revocations=revocations,
            sessions=sessions,
            memberships=memberships,
            live=live,
            feed=feed,
            read_model=read_model,
            webhook_bodies=BodySlots(settings),
            github=httpx.AsyncClient(timeout=settings.github_http_timeout_seconds),
        )

    def start(self) -> None:
        self.bus.start()

    async def close(self) -> None:
        await self.revocations.close()
        await self.feed.close()
        await self.bus.close()
        await self.clients.close()
        await self.github.aclose()


async def get_gateway(request: Request) -> Gateway:
    # async: FastAPI runs a plain `def` dependency in a worker thread, on every request.
    gateway: Gateway = request.app.state.gateway
    return gateway
