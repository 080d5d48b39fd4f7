"""gRPC server runtime: bootstrap, interceptors, per-RPC unit of work."""

from polar_kit.grpc.context import current_request_id, current_session
from polar_kit.grpc.interceptors import REQUEST_ID_KEY
from polar_kit.grpc.server import (
    RunningServer,
    ServiceSpec,
    Worker,
    run_until_signal,
    serve,
    start_server,
)

__all__ = [
    "REQUEST_ID_KEY",
    "RunningServer",
    "ServiceSpec",
    "Worker",
    "current_request_id",
    "current_session",
    "run_until_signal",
    "serve",
    "start_server",
]
