"""What the routes share, built once per process (app.state.gateway)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from fastapi import Request

from .authz import Memberships
from .bus import Bus
from .clients import Clients
from .sessions import Revocations, TokenSigner
from .settings import GatewaySettings


@dataclass
class Gateway:
    settings: GatewaySettings
    clients: Clients
    bus: Bus
    tokens: TokenSigner
    revocations: Revocations
    memberships: Memberships
    github: httpx.AsyncClient  # sign-in only: token exchange and the user's profile

    @classmethod
    def create(cls, settings: GatewaySettings) -> Gateway:
        clients = Clients(settings)
        revocations = Revocations(settings)
        return cls(
            settings=settings,
            clients=clients,
            bus=Bus(settings, on_ready=[revocations.setup]),
            tokens=TokenSigner(settings),
            revocations=revocations,
            memberships=Memberships(
                clients,
                ttl=settings.membership_cache_seconds,
                size=settings.membership_cache_size,
            ),
            github=httpx.AsyncClient(timeout=settings.github_http_timeout_seconds),
        )

    def start(self) -> None:
        self.bus.start()

    async def close(self) -> None:
        await self.revocations.close()
        await self.bus.close()
        await self.clients.close()
        await self.github.aclose()


async def get_gateway(request: Request) -> Gateway:
    # async: FastAPI runs a plain `def` dependency in a worker thread, on every request.
    gateway: Gateway = request.app.state.gateway
    return gateway
