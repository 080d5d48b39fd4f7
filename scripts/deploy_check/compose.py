"""docker-compose.yml and .env.example: the compose-spec schema, then what the code expects."""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from dotenv import dotenv_values
from pydantic import SecretStr

from .common import (
    MIGRATE_ENV,
    MIGRATE_MODULE,
    ROOT,
    SECRET_PLACEHOLDER,
    UNUSED_SETTINGS,
    Report,
    Service,
    dev_mode,
    env_name,
    instantiate,
    module_runnable,
    required_vars,
    run,
    settings_vars,
    tail,
    tool,
)

COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def interpolate(text: str, variables: dict[str, str]) -> str:
    """Compose's variable substitution (both Compose v2 and 1.29 have these forms)."""

    def value(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        given = variables.get(name)
        if given is not None and (given or not (operator or "").startswith(":")):
            return given
        if operator and operator.endswith("?"):
            raise ValueError(f"{name} must be set: {argument}")
        return argument if operator else ""

    return VARIABLE.sub(value, text)


def secret_names(services: list[Service]) -> set[str]:
    """POLAR_* variables of every SecretStr setting."""
    return {
        env_name(name)
        for s in services
        for name, field in s.settings.model_fields.items()
        if field.annotation is SecretStr
    }


def check_compose(report: Report, services: list[Service]) -> None:
    report.start("compose")
    checker = tool("check-jsonschema")
    if checker is None:
        report.check(False, "check-jsonschema is installed (dev dependency)")
    else:
        result = run([checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)])
        report.check(
            result.returncode == 0,
            "docker-compose.yml is valid against the compose-spec schema",
            tail(result.stdout + result.stderr),
        )

    # Compose 1.29 (Debian's) next to v2: no top-level name, env_file entries as plain paths
    # (it has no `{path, required}` form and fails on a missing file), and, where they are
    # installed, both accept the file (`config` needs no Docker engine).
    text = COMPOSE_FILE.read_text()
    raw = yaml.safe_load(text)
    report.check("name" not in raw, "no top-level `name:` (Compose 1.29 rejects it)")
    tracked = set(run(["git", "ls-files"], cwd=ROOT).stdout.splitlines())
    env_files = [f for svc in raw["services"].values() for f in svc.get("env_file", [])]
    report.check(
        all(isinstance(f, str) and f in tracked for f in env_files),
        "env_file entries are plain paths of committed files (Compose 1.29: none optional)",
        str(sorted({str(f) for f in env_files if not isinstance(f, str) or f not in tracked})),
    )
    for command in (["docker", "compose"], ["docker-compose"]):
        if tool(command[0]) is None or run([*command, "version"]).returncode != 0:
            report.skip(f"`{' '.join(command)} config` ({command[-1]} not installed)")
            continue
        result = run([*command, "--project-directory", str(ROOT), "config", "--quiet"], cwd=ROOT)
        report.check(
            result.returncode == 0,
            f"`{' '.join(command)} config` accepts docker-compose.yml",
            tail(result.stdout + result.stderr),
        )

    # Secrets: never in a committed file; the compose file takes each from the environment
    # or `.env`. The rest of the checks see the file as a user with real secrets would.
    env_file = {k: v or "" for k, v in dotenv_values(ENV_EXAMPLE).items()}
    secret_vars = secret_names(services)
    committed = sorted(k for k in secret_vars if env_file.get(k))
    report.check(not committed, ".env.example holds no secret value", str(committed))
    interpolated = {name for name, _, _ in VARIABLE.findall(text)}
    compose = yaml.safe_load(
        interpolate(text, {name: secrets.token_hex(32) for name in interpolated & secret_vars})
    )
    all_services: dict[str, Any] = compose["services"]
    known = set().union(*(settings_vars(s.settings) for s in services)) | MIGRATE_ENV
    unknown = sorted(k for k in env_file if k.startswith("POLAR_") and k not in known)
    report.check(
        not unknown, ".env.example sets only real settings (of some service)", str(unknown)
    )
    report.check(
        all(k.startswith("POLAR_") for k in env_file),
        ".env.example holds only POLAR_* variables",
        str([k for k in env_file if not k.startswith("POLAR_")]),
    )

    image_services = {
        name: svc
        for name, svc in all_services.items()
        if "build" in svc or "polar" in str(svc.get("image", ""))
    }
    by_module = {}
    for name, svc in image_services.items():
        command = svc.get("command") or []
        report.check(
            isinstance(command, list) and bool(command) and module_runnable(command[0]),
            f"{name}: runs an existing module (`python -m {command[0] if command else '?'}`)",
        )
        if command:
            by_module[command[0]] = name
        files = [f["path"] if isinstance(f, dict) else f for f in svc.get("env_file", [])]
        report.check(".env.example" in files, f"{name}: reads .env.example", str(files))
        report.check(
            svc.get("read_only") is True and "/tmp" in (svc.get("tmpfs") or []),
            f"{name}: read-only root filesystem with a /tmp tmpfs",
        )

    for service in services:
        found = by_module.get(service.module)
        if not report.check(
            found is not None,
            f"{service.name}: a compose service runs `python -m {service.module}`",
        ):
            continue
        name = str(found)
        svc = all_services[name]
        own_env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
        env = {**env_file, **own_env}
        port = int(env.get(service.port_env, service.port))
        report.check(
            port == service.port,
            f"{name}: listens on the declared port {service.port} ({service.port_env})",
            str(port),
        )
        fields = settings_vars(service.settings)
        foreign = sorted(k for k in own_env if k.startswith("POLAR_") and k not in fields)
        report.check(
            not foreign, f"{name}: its environment holds only its own settings", str(foreign)
        )
        # Secrets are never committed: those this service is given come from ${...}.
        raw_env = {k: str(v) for k, v in (raw["services"][name].get("environment") or {}).items()}
        literal = sorted(
            k for k in raw_env if k in secret_vars and not raw_env[k].startswith(f"${{{k}")
        )
        report.check(
            not literal, f"{name}: takes its secrets from the environment or .env", str(literal)
        )
        missing = sorted(required_vars(service) - env.keys())
        report.check(not missing, f"{name}: sets every setting a deployment needs", str(missing))
        report.check(not dev_mode(env), f"{name}: not in development mode (POLAR_DEV_MODE)")
        from_dotenv = {k: SECRET_PLACEHOLDER for k in required_vars(service) & secret_vars}
        error = instantiate(service, env | from_dotenv)
        report.check(not error, f"{name}: {service.settings.__name__} accepts the values", error)
        health = " ".join(map(str, (svc.get("healthcheck") or {}).get("test", [])))
        if service.protocol == "grpc":
            report.check(
                f"polar_kit.healthcheck 127.0.0.1:{port}" in health,
                f"{name}: healthcheck is gRPC health on :{port}",
                health,
            )
            report.check(
                str(port) in [str(p) for p in svc.get("expose", [])],
                f"{name}: exposes {port} to the other containers",
            )
            report.check("ports" not in svc, f"{name}: publishes no port on the host")
        else:
            report.check(
                f"127.0.0.1:{port}/readyz" in health,
                f"{name}: healthcheck is GET /readyz on :{port}",
                health,
            )
            published = [str(p).rsplit(":", 1)[-1] for p in svc.get("ports", [])]
            report.check(
                published == [str(port)], f"{name}: publishes its port {port}", str(published)
            )
        depends = svc.get("depends_on") or {}
        report.check(
            depends.get("nats", {}).get("condition") == "service_healthy",
            f"{name}: waits for a healthy NATS",
        )
        if "POLAR_DATABASE_URL" not in UNUSED_SETTINGS.get(service.name, set()):
            migrate = by_module.get(MIGRATE_MODULE, "")
            report.check(
                depends.get(migrate, {}).get("condition") == "service_completed_successfully",
                f"{name}: starts after the migration completed",
            )
        # Targets of other services (the gateway's upstreams) name a compose service and port.
        for other in services:
            target = env.get(env_name(f"{other.name}_grpc_target"))
            if target is not None and other is not service:
                host, _, target_port = target.rpartition(":")
                other_name = by_module.get(other.module)
                report.check(
                    host == other_name and target_port == str(other.port),
                    f"{name}: reaches {other.name} at its compose name and port",
                    target,
                )
                report.check(
                    depends.get(other_name or "", {}).get("condition") == "service_healthy",
                    f"{name}: waits for a healthy {other.name}",
                )

    migrate_name = by_module.get(MIGRATE_MODULE)
    if report.check(migrate_name is not None, f"a one-shot service runs `{MIGRATE_MODULE}`"):
        svc = all_services[str(migrate_name)]
        report.check(
            svc.get("command", [])[1:] == ["upgrade", "head"] and svc.get("restart") == "no",
            f"{migrate_name}: `upgrade head`, not restarted",
        )

    # Every service_healthy dependency has a healthcheck to wait on.
    for name, svc in all_services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            if cond.get("condition") == "service_healthy":
                report.check(
                    "healthcheck" in all_services.get(dep, {}),
                    f"{name}: depends on {dep}'s healthcheck, which exists",
                )

    # Profiles (observability) are opt-in: the default cluster is the services without one.
    optional = {n for n, s in all_services.items() if s.get("profiles")}
    published = sorted(n for n, s in all_services.items() if s.get("ports") and n not in optional)
    report.check(
        published == [by_module.get("polar_gateway")],
        "only the gateway publishes a port on the host (without a profile)",
        str(published),
    )
    check_observability(report, all_services, raw["services"], env_file, by_module, optional)

    # PostgreSQL: the URL the services use is the one the postgres container creates.
    url = urlsplit(env_file.get("POLAR_DATABASE_URL", ""))
    pg_env = all_services.get("postgres", {}).get("environment", {})
    report.check(
        url.hostname == "postgres"
        and url.username == pg_env.get("POSTGRES_USER")
        and url.password == pg_env.get("POSTGRES_PASSWORD")
        and url.path.lstrip("/") == pg_env.get("POSTGRES_DB"),
        "POLAR_DATABASE_URL matches the postgres service (host, user, password, database)",
    )
    report.check(
        "pg_isready"
        in " ".join(all_services.get("postgres", {}).get("healthcheck", {}).get("test", [])),
        "postgres: healthcheck is pg_isready",
    )
    nats_url = urlsplit(env_file.get("POLAR_NATS_URL", ""))
    report.check(
        nats_url.hostname == "nats" and nats_url.port == 4222,
        "POLAR_NATS_URL is the nats service",
        env_file.get("POLAR_NATS_URL", ""),
    )
    nats = all_services.get("nats", {})
    config = next(
        (
            ROOT / v.split(":")[0]
            for v in nats.get("volumes", [])
            if v.endswith(":/etc/nats/nats.conf:ro")
        ),
        None,
    )
    if report.check(
        config is not None and config.exists(), "nats: mounts a config file that exists"
    ):
        assert config is not None
        text = config.read_text()
        report.check(
            re.search(r"^\s*sync_interval:\s*always\s*$", text, re.M) is not None,
            "nats: JetStream syncs every write (sync_interval: always)",
        )
        store = re.search(r"^\s*store_dir:\s*(\S+)", text, re.M)
        report.check(
            store is not None
            and any(str(v).endswith(f":{store.group(1)}") for v in nats.get("volumes", [])),
            "nats: the JetStream store_dir is a volume",
        )
        max_payload = re.search(r"^\s*max_payload:\s*(\d+)", text, re.M)
        limit = env_file.get("POLAR_WEBHOOK_MAX_BODY_BYTES")
        report.check(
            max_payload is not None
            and limit is not None
            and int(limit) < int(max_payload.group(1)),
            "nats: max_payload is above the gateway's webhook body limit",
        )
        server = tool("nats-server")
        if server is None:
            report.skip("nats-server -t (nats-server not installed)")
        else:
            result = run([server, "-c", str(config), "-t"])
            report.check(
                result.returncode == 0,
                f"nats-server -t accepts {config.relative_to(ROOT)}",
                tail(result.stdout + result.stderr),
            )


def check_observability(
    report: Report,
    all_services: dict[str, Any],
    raw_services: dict[str, Any],
    env_file: dict[str, str],
    by_module: dict[str, str],
    optional: set[str],
) -> None:
    """The `observability` profile: its files exist, Prometheus scrapes each Polar service on
    its metrics port, its ports stay on the loopback, and the services reach the collector."""
    wanted = {"otel-collector", "jaeger", "prometheus", "grafana"}
    report.check(
        wanted <= optional
        and all(all_services[n].get("profiles") == ["observability"] for n in wanted),
        "observability: collector, Jaeger, Prometheus and Grafana, in that profile only",
        str(sorted(optional)),
    )
    for name in sorted(wanted & set(all_services)):
        svc = all_services[name]
        mounts = [str(v).split(":")[0] for v in svc.get("volumes", [])]
        missing = [m for m in mounts if m.startswith("./") and not (ROOT / m).exists()]
        report.check(not missing, f"{name}: mounts files that exist", str(missing))
        ports = [str(p) for p in svc.get("ports", [])]
        report.check(
            all(p.startswith("127.0.0.1:") for p in ports),
            f"{name}: publishes on the loopback only",
            str(ports),
        )
    config = yaml.safe_load((ROOT / "deploy/observability/prometheus/prometheus.yml").read_text())
    targets = {
        t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    }
    port = env_file.get("POLAR_METRICS_PORT", "")
    services = sorted(by_module[m] for m in by_module if m != MIGRATE_MODULE)
    expected = {f"{name}:{port}" for name in services}
    report.check(
        bool(port) and expected <= targets,
        "observability: Prometheus scrapes every Polar service on POLAR_METRICS_PORT",
        f"{sorted(expected - targets)} (POLAR_METRICS_PORT={port!r})",
    )
    endpoints = {
        name: (raw_services[name].get("environment") or {}).get("OTEL_EXPORTER_OTLP_ENDPOINT")
        for name in services
    }
    report.check(
        all(v == "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" for v in endpoints.values()),
        "every Polar service takes OTEL_EXPORTER_OTLP_ENDPOINT from the environment (the "
        "observability profile's collector; empty without it)",
        str(endpoints),
    )
    check_prometheus_files(report)


def check_prometheus_files(report: Report) -> None:
    """Prometheus's own checks of its configuration and alert rules, and the rules' unit
    tests, by promtool when it is installed (Debian's `prometheus` package; not on PyPI).
    Without it, tests/test_observability.py checks their structure and metric names."""
    promtool = tool("promtool")
    if promtool is None:
        report.skip("promtool check/test (promtool not installed)")
        return
    folder = ROOT / "deploy/observability/prometheus"
    for command, what in (
        (["check", "rules", "alerts.yml"], "promtool check rules accepts alerts.yml"),
        (["test", "rules", "alerts_test.yml"], "promtool test rules passes alerts_test.yml"),
    ):
        result = run([promtool, *command], cwd=folder)
        report.check(result.returncode == 0, what, tail(result.stdout + result.stderr))
    # The configuration names its rules where the container mounts them (/etc/prometheus):
    # checked from a copy that names the file beside it.
    config = (folder / "prometheus.yml").read_text()
    with tempfile.TemporaryDirectory() as copy:
        Path(copy, "prometheus.yml").write_text(config.replace("/etc/prometheus/", ""))
        shutil.copy(folder / "alerts.yml", copy)
        result = run([promtool, "check", "config", "prometheus.yml"], cwd=copy)
    report.check(
        result.returncode == 0 and "/etc/prometheus/alerts.yml" in config,
        "promtool check config accepts prometheus.yml (its rules included)",
        tail(result.stdout + result.stderr),
    )
