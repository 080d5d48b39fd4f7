"""`python -m polar_kit.healthcheck HOST:PORT [SERVICE]`: exit 0 when a gRPC server answers
SERVING to the standard health check (`grpc.health.v1.Health/Check`), 1 otherwise.

For container healthchecks (docker compose) where no `grpc_health_probe` binary exists: the
image already has Python and grpcio. SERVICE defaults to "" (the whole server), which turns
NOT_SERVING as soon as a graceful shutdown starts. Kubernetes uses its native gRPC probes
instead (`grpc: {port: ...}`), which ask the same question.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(target: str, service: str = "", timeout: float = 3.0) -> tuple[bool, str]:
    """(healthy, what was seen) for the server at `target` (host:port)."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            name = code.name if code is not None else type(exc).__name__
            return False, name
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m polar_kit.healthcheck",
        description="Exit 0 when the gRPC server answers SERVING to grpc.health.v1.Health/Check.",
    )
    parser.add_argument("target", help="host:port of the gRPC server, e.g. 127.0.0.1:50051")
    parser.add_argument("service", nargs="?", default="", help='service name; "" = the server')
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    args = parser.parse_args(argv)
    healthy, seen = check(args.target, args.service, args.timeout)
    print(f"{args.target} {args.service or '(server)'}: {seen}")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
