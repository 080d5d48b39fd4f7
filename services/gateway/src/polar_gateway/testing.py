"""Running the gateway inside another program's event loop (tests, benchmarks)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from .app import asgi, create_app
from .server import config as server_config
from .settings import GatewaySettings
from .state import Gateway


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the host program owns the signals


@dataclass
class RunningGateway:
    url: str
    app: FastAPI

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.app.state.gateway
        return gateway


@contextlib.asynccontextmanager
async def running_gateway(
    settings: GatewaySettings, *, host: str = "127.0.0.1", wait_for_nats: bool = True
) -> AsyncIterator[RunningGateway]:
    """Serve the gateway on a free port of `host` until the block exits."""
    app = create_app(settings)
    # Port 0 and ask afterwards: a socket bound here and handed over would miss TCP_NODELAY
    # under uvloop (every response then waits ~40 ms for a delayed ACK).
    config = server_config(asgi(app, settings), settings, host=host, port=0)
    config.timeout_graceful_shutdown = 2
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the gateway stopped during start-up")
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        running = RunningGateway(f"http://{host}:{port}", app)
        if wait_for_nats:
            await asyncio.wait_for(running.gateway.bus.ready.wait(), 30)
            # Session tokens are refused (503) until the revoked sessions are loaded.
            await asyncio.wait_for(running.gateway.revocations.loaded.wait(), 30)
        yield running
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
