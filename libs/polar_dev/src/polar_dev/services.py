"""Service discovery: every `services/*/pyproject.toml` with a `[tool.polar.service]` table.

    [tool.polar.service]
    module = "polar_organization"          # started as `python -m <module>`
    protocol = "grpc"                      # grpc | http (only changes how the address is shown)
    port-env = "POLAR_ORGANIZATION_GRPC_PORT"
    port = 50051                           # default; the environment variable overrides it

A new service plugs into `make dev` by adding this table; the runner needs no change.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROTOCOLS = ("grpc", "http")


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # the service's folder name
    module: str
    protocol: str
    port_env: str
    port: int
    path: Path

    def address(self, port: int | None = None) -> str:
        port = self.port if port is None else port
        if self.protocol == "http":
            return f"http://127.0.0.1:{port}"
        return f"127.0.0.1:{port}"


def _field(table: dict[str, Any], key: str, kind: type, source: Path) -> Any:
    value = table.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{source}: [tool.polar.service] needs `{key}` ({kind.__name__})")
    return value


def read_service(pyproject: Path) -> ServiceSpec | None:
    """The service declared in `pyproject`, or None when it has no `[tool.polar.service]` table."""
    data = tomllib.loads(pyproject.read_text())
    table = data.get("tool", {}).get("polar", {}).get("service")
    if table is None:
        return None
    protocol = _field(table, "protocol", str, pyproject)
    if protocol not in PROTOCOLS:
        raise ValueError(f"{pyproject}: protocol must be one of {PROTOCOLS}, not {protocol!r}")
    return ServiceSpec(
        name=pyproject.parent.name,
        module=_field(table, "module", str, pyproject),
        protocol=protocol,
        port_env=_field(table, "port-env", str, pyproject),
        port=_field(table, "port", int, pyproject),
        path=pyproject.parent,
    )


def discover_services(services_root: Path) -> list[ServiceSpec]:
    """All declared services under `services_root`, sorted by name."""
    specs = [read_service(p) for p in sorted(services_root.glob("*/pyproject.toml"))]
    return [spec for spec in specs if spec is not None]
