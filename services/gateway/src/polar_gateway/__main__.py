"""`python -m polar_gateway`: the HTTP server (uvicorn), stopped gracefully on SIGTERM/SIGINT:
it stops accepting, lets in-flight requests finish (up to shutdown_grace_seconds), ends the
live streams, then closes the channels and NATS (the app's lifespan)."""

from __future__ import annotations

import signal
import sys
from types import FrameType

import uvicorn
from polar_kit.logging import configure_logging

from .app import asgi, create_app
from .settings import GatewaySettings


def config(settings: GatewaySettings) -> uvicorn.Config:
    return uvicorn.Config(
        asgi(create_app(settings)),
        host=settings.gateway_http_host,
        port=settings.gateway_http_port,
        log_config=None,  # structlog owns the root logger (configure_logging)
        access_log=False,  # the middleware logs failures and counts everything
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) or None,
        lifespan="on",
    )


def _stopped(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def main() -> None:
    settings = GatewaySettings()
    configure_logging(settings.log_level, settings.log_json)
    # After its graceful shutdown uvicorn restores the handler it found and raises the signal
    # again, so with the default one the process would end killed by SIGTERM (status 143)
    # although everything was drained and closed: end with 0, like the gRPC services.
    signal.signal(signal.SIGTERM, _stopped)
    # Server.run() picks the event loop (uvloop when installed) and installs its own
    # SIGTERM/SIGINT handlers.
    uvicorn.Server(config(settings)).run()


if __name__ == "__main__":
    main()
