"""What every group of checks uses: the report, the services and their settings classes."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
# Settings a process never uses although its class has them (the gateway never opens a
# database connection: it reaches the domains through gRPC and NATS only).
UNUSED_SETTINGS = {"gateway": {"POLAR_DATABASE_URL"}}
# The migration (`python -m polar_db.migrate`) reads this one variable, with no settings class.
MIGRATE_MODULE = "polar_db.migrate"
MIGRATE_ENV = {"POLAR_DATABASE_URL"}
# What a secret (a secretKeyRef, a line of the user's .env) stands for when the settings
# classes are instantiated.
SECRET_PLACEHOLDER = "placeholder-secret-value-of-sufficient-length-0123456789"


@dataclass
class Report:
    passed: int = 0
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    section: str = ""

    def check(self, condition: bool, message: str, detail: str = "") -> bool:
        if condition:
            self.passed += 1
            print(f"  ok    {message}")
        else:
            text = f"{message}: {detail}" if detail else message
            self.failed.append(f"[{self.section}] {text}")
            print(f"  FAIL  {text}")
        return condition

    def skip(self, message: str) -> None:
        self.skipped.append(f"[{self.section}] {message}")
        print(f"  SKIP  {message}")

    def start(self, section: str) -> None:
        self.section = section
        print(f"{section}:")


@dataclass(frozen=True)
class Service:
    name: str  # directory under services/, also the compose service and Deployment name
    project: str  # distribution name (uv --package)
    module: str
    protocol: str
    port_env: str
    port: int
    settings: type[BaseSettings]


def settings_class(module: str) -> type[BaseSettings]:
    name = f"{module}.settings"
    mod = importlib.import_module(name)
    classes = [
        value
        for value in vars(mod).values()
        if isinstance(value, type) and issubclass(value, BaseSettings) and value.__module__ == name
    ]
    if len(classes) != 1:
        raise RuntimeError(f"expected one settings class in {name}, found {classes}")
    return classes[0]


def discover_services() -> list[Service]:
    services = []
    for path in sorted(ROOT.glob("services/*/pyproject.toml")):
        data = tomllib.loads(path.read_text())
        declared = data.get("tool", {}).get("polar", {}).get("service")
        if not declared:
            continue
        services.append(
            Service(
                name=path.parent.name,
                project=data["project"]["name"],
                module=declared["module"],
                protocol=declared["protocol"],
                port_env=declared["port-env"],
                port=int(declared["port"]),
                settings=settings_class(declared["module"]),
            )
        )
    return services


def env_name(field_name: str) -> str:
    return f"POLAR_{field_name.upper()}"


def settings_vars(cls: type[BaseSettings]) -> set[str]:
    return {env_name(name) for name in cls.model_fields}


@contextlib.contextmanager
def polar_environment(values: Mapping[str, str]) -> Iterator[None]:
    """os.environ with no POLAR_* variable but `values`, restored afterwards."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("POLAR_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(values)
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("POLAR_")]:
            del os.environ[key]
        os.environ.update(saved)


def dev_mode(env: Mapping[str, str]) -> bool:
    """POLAR_DEV_MODE is on: public development secrets accepted, insecure cookies."""
    return env.get("POLAR_DEV_MODE", "").strip().lower() in ("1", "true", "yes", "on")


def required_vars(service: Service) -> set[str]:
    """Settings a deployment must set: those whose default only works on a developer's
    machine (a loopback address) and secrets whose default is a development value."""
    with polar_environment({}):
        defaults = service.settings()
    required = set()
    for name in service.settings.model_fields:
        value = getattr(defaults, name)
        if isinstance(value, SecretStr):
            if value.get_secret_value():
                required.add(env_name(name))
        elif isinstance(value, str) and ("127.0.0.1" in value or "localhost" in value):
            required.add(env_name(name))
    return required - UNUSED_SETTINGS.get(service.name, set())


def instantiate(service: Service, env: Mapping[str, str]) -> str:
    """'' when the settings class accepts `env`, else the error."""
    with polar_environment(env):
        try:
            service.settings()
        except ValidationError as exc:
            return "; ".join(f"{e['loc']}: {e['msg']}" for e in exc.errors())
    return ""


def module_runnable(module: str) -> bool:
    """`python -m module` would find something to run."""
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        return False
    if spec is None:
        return False
    if spec.submodule_search_locations is not None:  # a package: needs __main__
        return importlib.util.find_spec(f"{module}.__main__") is not None
    return True


def tool(name: str) -> str | None:
    """An executable from this venv (dev dependencies), else from PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    return shutil.which(name)


def run(command: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
