"""`python -m polar_gateway`: the HTTP server (uvicorn), stopped gracefully on SIGTERM/SIGINT:
it stops accepting, lets in-flight requests finish (up to shutdown_grace_seconds), ends the
live streams, then closes the channels and NATS (the app's lifespan).

It refuses to start (exit status 2, one line saying why) with a missing, short or published
secret outside POLAR_DEV_MODE."""

from __future__ import annotations

import gc
import signal
import sys
from types import FrameType

import uvicorn
from polar_kit.logging import configure_logging
from polar_kit.secrets import InsecureSecretError
from polar_kit.tracing import configure_tracing
from pydantic import ValidationError

from .app import asgi, create_app
from .server import config as server_config
from .settings import GatewaySettings

YOUNG_THRESHOLD = 10_000


def config(settings: GatewaySettings) -> uvicorn.Config:
    return server_config(asgi(create_app(settings), settings), settings)


def _stopped(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def main() -> None:
    try:
        settings = GatewaySettings()
        settings.check_secrets()
    except (InsecureSecretError, ValidationError) as exc:
        print(f"polar_gateway refuses to start: {exc}", file=sys.stderr)
        sys.exit(2)
    configure_logging(settings.log_level, settings.log_json)
    configure_tracing("polar-gateway", settings.trace_dir)
    # After its graceful shutdown uvicorn restores the handler it found and raises the signal
    # again, so with the default one the process would end killed by SIGTERM (status 143)
    # although everything was drained and closed: end with 0, like the gRPC services.
    signal.signal(signal.SIGTERM, _stopped)
    server = uvicorn.Server(config(settings))
    # What start-up built (modules, the app, its models: ~150k objects, alive for good) is
    # taken out of the cyclic collector's sight, which traversed it all on every full
    # collection (as polar_kit.grpc.serve does for the services).
    gc.collect()
    gc.freeze()
    # Young collections 14 times rarer than CPython's default (700): each one promotes what
    # is alive at that moment (events waiting in streams' buffers, futures of waiting
    # streams), and promotions are what trigger full collections, which traverse every open
    # stream (decision 0030).
    gc.set_threshold(YOUNG_THRESHOLD, 10, 10)
    # Server.run() picks the event loop (uvloop when installed) and installs its own
    # SIGTERM/SIGINT handlers.
    server.run()


if __name__ == "__main__":
    main()
