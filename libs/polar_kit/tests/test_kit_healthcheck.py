"""`python -m polar_kit.healthcheck`: the container healthcheck of the gRPC services."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from polar_kit.healthcheck import check, main


@pytest.fixture
def health_server() -> Iterator[tuple[str, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        server.stop(None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serving_server_is_healthy(health_server: tuple[str, health.HealthServicer]) -> None:
    target, servicer = health_server
    servicer.set("polar.test.v1.TestService", health_pb2.HealthCheckResponse.SERVING)
    assert check(target) == (True, "SERVING")
    assert check(target, "polar.test.v1.TestService") == (True, "SERVING")
    assert main([target]) == 0


def test_shutting_down_server_is_unhealthy(
    health_server: tuple[str, health.HealthServicer],
) -> None:
    target, servicer = health_server
    servicer.enter_graceful_shutdown()  # what polar_kit.grpc does on SIGTERM
    assert check(target) == (False, "NOT_SERVING")
    assert main([target]) == 1


def test_unknown_service_is_unhealthy(health_server: tuple[str, health.HealthServicer]) -> None:
    target, _ = health_server
    assert check(target, "polar.nope.v1.Nope") == (False, "NOT_FOUND")


def test_nothing_listening_is_unhealthy() -> None:
    healthy, seen = check(f"127.0.0.1:{free_port()}", timeout=1)
    assert not healthy
    assert seen in {"UNAVAILABLE", "DEADLINE_EXCEEDED"}


def test_command_line_exit_codes(health_server: tuple[str, health.HealthServicer]) -> None:
    target, servicer = health_server
    command = [sys.executable, "-m", "polar_kit.healthcheck", target]
    ok = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "SERVING" in ok.stdout
    servicer.enter_graceful_shutdown()
    down = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert down.returncode == 1
    assert "NOT_SERVING" in down.stdout
