"""Every process's /metrics, scraped from the real processes: each metric of the inventory
(tests/metrics_inventory.yaml, read by polar_dev.metrics_inventory: name, type and labels,
per process) is there as listed, and nothing of ours is there that it does not list. The
alert rules and the dashboard are checked against the same inventory
(test_observability.py), so what they query exists."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import os
import secrets
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from polar_dev.fake_github import FakeGitHub
from polar_dev.infra import Infra
from polar_dev.metrics_inventory import families_of, load_inventory
from polar_dev.paths import repo_root
from polar_dev.pytest_plugin import delete_streams, temporary_database
from polar_dev.services import discover_services
from polar_kit.testing import eventually
from prometheus_client.parser import text_string_to_metric_families


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG, as the dev runner does


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def metrics_ports(
    polar_infra: Infra, fake_github_server: FakeGitHub, tmp_path: Path
) -> AsyncIterator[dict[str, int]]:
    """Every process (services/*), as deployed but one replica each; process -> its metrics
    port."""
    prefix = f"t{secrets.token_hex(5)}."
    specs = {s.name: s for s in discover_services(repo_root() / "services")}
    ports = {name: free_port() for name in specs}
    metrics = {name: free_port() for name in specs}
    processes: dict[str, asyncio.subprocess.Process] = {}
    async with temporary_database(polar_infra.database_url) as database_url:
        base = {
            **os.environ,
            "POLAR_DEV_MODE": "true",  # a test: its secrets are in the repository
            "POLAR_DATABASE_URL": database_url,
            "POLAR_NATS_URL": polar_infra.nats_url,
            "POLAR_NATS_PREFIX": prefix,
            "POLAR_GITHUB_API_URL": fake_github_server.url,
            "POLAR_INTERNAL_SECRET": secrets.token_hex(32),
            "POLAR_TOKEN_ENCRYPTION_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "POLAR_GITHUB_WEBHOOK_SECRET": secrets.token_hex(16),
            "POLAR_SESSION_SECRET": secrets.token_hex(32),
            "POLAR_METRICS_HOST": "127.0.0.1",
            "POLAR_METRICS_SAMPLE_SECONDS": "0.5",
            "POLAR_ORGANIZATION_GRPC_TARGET": f"127.0.0.1:{ports['organization']}",
            "POLAR_REPOSITORY_GRPC_TARGET": f"127.0.0.1:{ports['repository']}",
            "POLAR_REWARD_GRPC_TARGET": f"127.0.0.1:{ports['reward']}",
            "POLAR_GATEWAY_HTTP_HOST": "127.0.0.1",
        }
        try:
            for name, spec in specs.items():
                env = base | {
                    spec.port_env: str(ports[name]),
                    "POLAR_METRICS_PORT": str(metrics[name]),
                }
                with (tmp_path / f"{name}.log").open("wb") as log:
                    processes[name] = await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        spec.module,
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=log,
                        stderr=log,
                        env=env,
                        cwd=repo_root(),
                        start_new_session=True,
                        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                    )
            yield metrics | {"gateway_http": ports["gateway"]}
        except BaseException:
            for name in processes:
                print(f"--- {name}", (tmp_path / f"{name}.log").read_text()[-3000:])
            raise
        finally:
            for process in processes.values():
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    await process.wait()
            await delete_streams(polar_infra.nats_url, prefix)


def samples(text: str, name: str) -> list[dict[str, str]]:
    return [
        dict(s.labels)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


async def test_every_process_exports_the_inventory(metrics_ports: dict[str, int]) -> None:
    inventory = load_inventory()
    # Every process is listed: a new service comes with its entry.
    assert set(inventory) == {s.name for s in discover_services(repo_root() / "services")}
    scraped: dict[str, dict[str, dict[str, Any]]] = {}
    texts: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=5) as http:

        async def gateway_answers() -> bool:
            # One API request, so the HTTP metrics have their labels.
            with contextlib.suppress(httpx.TransportError):
                url = f"http://127.0.0.1:{metrics_ports['gateway_http']}/api/v2/users/me"
                return (await http.get(url)).status_code == 401
            return False

        await eventually(gateway_answers, within=60)

        async def scraped_all() -> bool:
            for name in inventory:
                try:
                    response = await http.get(f"http://127.0.0.1:{metrics_ports[name]}/metrics")
                except httpx.TransportError:
                    return False
                texts[name] = response.text
                scraped[name] = families_of(response.text)
            # The sampled gauges are there once the first round has run.
            return all(set(inventory[n]) <= set(scraped[n]) for n in inventory)

        with contextlib.suppress(AssertionError):
            await eventually(scraped_all, within=60)
    for name, expected in inventory.items():
        listed = {
            k: {"type": v["type"], "labels": sorted(v["labels"])} for k, v in expected.items()
        }
        assert scraped[name] == listed, name

    # The label values an alert or a dashboard relies on, from the start (no traffic yet).
    health_watch = {
        "grpc_type": "server_stream",
        "grpc_service": "grpc.health.v1.Health",
        "grpc_method": "Watch",
    }
    assert health_watch in samples(texts["organization"], "grpc_server_started_total")
    assert {
        "grpc_type": "unary",
        "grpc_service": "polar.reward.v1.RewardService",
        "grpc_method": "CreateReward",
    } in samples(texts["reward"], "grpc_server_started_total")
    assert {
        "grpc_type": "unary",
        "grpc_service": "polar.repository.v1.RepositoryService",
        "grpc_method": "GetRepository",
    } in samples(texts["gateway"], "grpc_client_started_total")
    for name in ("organization", "repository", "reward"):
        backlog = samples(texts[name], "polar_outbox_backlog")
        assert backlog == [{"service": name, "table": "outbox_events"}], backlog
        consumers = {s["consumer"] for s in samples(texts[name], "polar_consumer_pending_messages")}
        assert consumers, name
        assert consumers <= {s["consumer"] for s in samples(texts[name], "polar_parked_messages")}
    reasons = {s["reason"] for s in samples(texts["gateway"], "polar_gateway_stream_ended_total")}
    assert "slow" in reasons
