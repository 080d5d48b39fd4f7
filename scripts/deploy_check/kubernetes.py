"""deploy/: every kustomization rendered (kubectl kustomize), validated against the Kubernetes
schemas, and checked against the code."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
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
from .netpol import check_network_policies, match_selector

DEPLOY = ROOT / "deploy"
OBSERVABILITY = DEPLOY / "observability"
# Oldest Kubernetes the manifests claim to support (native gRPC probes and matchLabelKeys are
# on by default from 1.27) and the newest schema kubernetes-validate bundles.
K8S_MIN_VERSION = "1.29.0"
DATABASE_URL_PLACEHOLDER = "postgresql://polar:secret@db.example.com:5432/polar?sslmode=require"
# Shutdown after POLAR_SHUTDOWN_GRACE_SECONDS: workers get 5 s more, then NATS drains for up
# to 5 s (polar_kit.grpc.server.run_until_signal).
SHUTDOWN_DRAIN_SECONDS = 10


def render(kubectl: str, directory: Path) -> list[dict[str, Any]]:
    result = run([kubectl, "kustomize", str(directory)])
    if result.returncode != 0:
        raise RuntimeError(tail(result.stderr))
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def container_env(
    container: Mapping[str, Any], config_maps: Mapping[str, Mapping[str, str]]
) -> tuple[dict[str, str], dict[str, str]]:
    """(plain values, secret-backed names -> secret/key) of a container's environment."""
    values: dict[str, str] = {}
    secrets: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef", {}).get("name")
        values.update(config_maps.get(ref, {}))
    for item in container.get("env") or []:
        if "value" in item:
            values[item["name"]] = str(item["value"])
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            secrets[item["name"]] = f"{ref['name']}/{ref['key']}"
    return values, secrets


def prestop_seconds(container: Mapping[str, Any]) -> int:
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    sleep = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
    if sleep:
        return int(sleep)
    if len(command) == 2 and command[0] == "sleep":
        return int(command[1])
    return 0


def check_kubernetes(report: Report, services: list[Service]) -> None:
    report.start("kubernetes")
    kubectl = tool("kubectl")
    if kubectl is None:
        report.skip("kubectl not installed on this platform: nothing rendered or validated")
        return
    try:
        import kubernetes_validate.utils as kv  # type: ignore[import-untyped]
    except ImportError:
        report.check(False, "kubernetes-validate is installed (dev dependency)")
        return
    versions = [K8S_MIN_VERSION, kv.latest_version()]
    directories = sorted(p.parent for p in DEPLOY.rglob("kustomization.yaml"))
    for directory in directories:
        rel = directory.relative_to(ROOT)
        try:
            docs = render(kubectl, directory)
        except RuntimeError as exc:
            report.check(False, f"{rel}: renders", str(exc))
            continue
        report.check(True, f"{rel}: renders ({len(docs)} objects)")
        errors = []
        for doc in docs:
            for version in versions:
                try:
                    kv.validate(doc, version, strict=True)
                except (kv.ValidationError, kv.SchemaNotFoundError) as exc:
                    errors.append(f"{doc['kind']}/{doc['metadata']['name']} @{version}: {exc}")
        report.check(
            not errors,
            f"{rel}: every object valid against the Kubernetes {' and '.join(versions)} schemas",
            "\n".join(errors[:5]),
        )
        kind = yaml.safe_load((directory / "kustomization.yaml").read_text()).get("kind")
        if kind == "Component":
            continue  # a part (deploy/observability): checked inside the overlays using it
        check_rendered(report, services, str(rel), docs)
        if "/overlays/" in f"/{rel}/":
            check_observability(report, str(rel), docs)


def check_rendered(
    report: Report, services: list[Service], rel: str, docs: list[dict[str, Any]]
) -> None:
    def of(kind: str) -> list[dict[str, Any]]:
        return [d for d in docs if d["kind"] == kind]

    config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in of("ConfigMap")}
    report.check(not of("Secret"), f"{rel}: no Secret objects (references only)")
    deployments = {d["metadata"]["name"]: d for d in of("Deployment")}
    images = {
        c["image"]
        for d in [*of("Deployment"), *of("Job")]
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    report.check(len(images) == 1, f"{rel}: one image for every process", str(images))
    namespace = next(
        iter({d["metadata"].get("namespace", "") for d in docs if d["kind"] != "Namespace"})
    )

    for service in services:
        deployment = deployments.get(service.name)
        if not report.check(deployment is not None, f"{rel}: Deployment {service.name}"):
            continue
        assert deployment is not None
        where = f"{rel}: {service.name}"
        spec = deployment["spec"]
        pod_spec = spec["template"]["spec"]
        labels = spec["template"]["metadata"]["labels"]
        containers = pod_spec["containers"]
        container = containers[0]
        args = container.get("args") or []
        report.check(
            bool(args) and args[0] == service.module and module_runnable(args[0]),
            f"{where}: runs `python -m {service.module}`",
            str(args),
        )
        values, secrets = container_env(container, config_maps)
        env = {**values, **{k: SECRET_PLACEHOLDER for k in secrets}}
        if "POLAR_DATABASE_URL" in secrets:
            env["POLAR_DATABASE_URL"] = DATABASE_URL_PLACEHOLDER
        port = int(env.get(service.port_env, service.port))
        report.check(port == service.port, f"{where}: listens on the declared port {service.port}")
        report.check(
            service.port in [p["containerPort"] for p in container.get("ports", [])],
            f"{where}: containerPort {service.port}",
        )
        fields = settings_vars(service.settings)
        foreign = sorted(k for k in env if k.startswith("POLAR_") and k not in fields)
        report.check(
            not foreign, f"{where}: every POLAR_* variable is one of its settings", str(foreign)
        )
        missing = sorted(required_vars(service) - env.keys())
        report.check(not missing, f"{where}: sets every setting a deployment needs", str(missing))
        report.check(not dev_mode(env), f"{where}: not in development mode (POLAR_DEV_MODE)")
        # Secrets: SecretStr settings, and the database URL (it carries the password).
        secret_fields = {
            env_name(n)
            for n, f in service.settings.model_fields.items()
            if f.annotation is SecretStr or n == "database_url"
        } - UNUSED_SETTINGS.get(service.name, set())
        plain = sorted(k for k in secret_fields if k in values)
        report.check(not plain, f"{where}: secrets come from Secrets, never ConfigMaps", str(plain))
        key_file = values.get("POLAR_GITHUB_APP_PRIVATE_KEY_FILE")
        if key_file:
            mounts = container.get("volumeMounts", [])
            volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
            report.check(
                any(
                    key_file.startswith(m["mountPath"].rstrip("/") + "/")
                    and "secret" in volumes.get(m["name"], {})
                    for m in mounts
                ),
                f"{where}: the GitHub App key file is a mounted Secret",
            )
        error = instantiate(service, env)
        report.check(not error, f"{where}: {service.settings.__name__} accepts the values", error)

        # Probes.
        if service.protocol == "grpc":
            for probe in ("readinessProbe", "livenessProbe"):
                report.check(
                    container.get(probe, {}).get("grpc", {}).get("port") == service.port,
                    f"{where}: native gRPC {probe} on :{service.port}",
                )
        else:
            named = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                get = container.get(probe, {}).get("httpGet", {})
                probe_port = named.get(get.get("port"), get.get("port"))
                report.check(
                    get.get("path") == path and probe_port == service.port,
                    f"{where}: {probe} GET {path} on :{service.port}",
                )

        # Replicas, disruption, scaling, Service.
        hpa = next(
            (
                h
                for h in of("HorizontalPodAutoscaler")
                if h["spec"]["scaleTargetRef"]["name"] == service.name
            ),
            None,
        )
        minimum = hpa["spec"].get("minReplicas", 1) if hpa else spec.get("replicas", 1)
        report.check(minimum >= 2, f"{where}: at least 2 replicas", f"min {minimum}")
        report.check(hpa is not None, f"{where}: a HorizontalPodAutoscaler")
        report.check(
            hpa is None or "replicas" not in spec,
            f"{where}: replicas left to the autoscaler (no spec.replicas)",
        )
        report.check(
            any(match_selector(p["spec"]["selector"], labels) for p in of("PodDisruptionBudget")),
            f"{where}: a PodDisruptionBudget",
        )
        service_objs = [
            s
            for s in of("Service")
            if match_selector({"matchLabels": s["spec"].get("selector", {})}, labels)
            and s["spec"].get("selector")
        ]
        report.check(
            any(
                p.get("targetPort")
                in (
                    service.port,
                    *[
                        q.get("name")
                        for q in container.get("ports", [])
                        if q["containerPort"] == service.port
                    ],
                )
                for s in service_objs
                for p in s["spec"]["ports"]
            ),
            f"{where}: a Service to port {service.port}",
        )

        # Resources and hardening.
        resources = container.get("resources", {})
        report.check(
            all(
                k in resources.get(s, {}) for s in ("requests", "limits") for k in ("cpu", "memory")
            ),
            f"{where}: cpu and memory requests and limits",
        )
        check_hardening(report, where, pod_spec)
        grace = float(env.get("POLAR_SHUTDOWN_GRACE_SECONDS", 10))
        needed = prestop_seconds(container) + grace + SHUTDOWN_DRAIN_SECONDS
        actual = pod_spec.get("terminationGracePeriodSeconds", 30)
        report.check(
            actual >= needed,
            f"{where}: terminationGracePeriodSeconds {actual} >= preStop + grace {grace:g} + drain",
            f"needs {needed:g}",
        )

    jobs = [
        j
        for j in of("Job")
        if (j["spec"]["template"]["spec"]["containers"][0].get("args") or [""])[0] == MIGRATE_MODULE
    ]
    if report.check(len(jobs) == 1, f"{rel}: a migration Job (`{MIGRATE_MODULE} upgrade head`)"):
        job = jobs[0]
        container = job["spec"]["template"]["spec"]["containers"][0]
        values, secrets = container_env(container, config_maps)
        report.check(
            container["args"][1:] == ["upgrade", "head"]
            and set(values) | set(secrets) == MIGRATE_ENV
            and "POLAR_DATABASE_URL" in secrets,
            f"{rel}: migrate: `upgrade head`, POLAR_DATABASE_URL from a Secret",
        )
        check_hardening(report, f"{rel}: migrate", job["spec"]["template"]["spec"])

    overlay = "/overlays/" in f"/{rel}/"
    check_network_policies(report, rel, namespace, docs, overlay, services)
    # The NATS URL lists at least as many servers as each stream has replicas.
    common: Mapping[str, str] = next((c for c in config_maps.values() if "POLAR_NATS_URL" in c), {})
    servers = [u for u in common.get("POLAR_NATS_URL", "").split(",") if u.strip()]
    replicas = int(common.get("POLAR_NATS_REPLICAS", "1"))
    report.check(
        bool(servers) and len(servers) >= replicas,
        f"{rel}: POLAR_NATS_URL names >= POLAR_NATS_REPLICAS ({replicas}) servers",
        str(servers),
    )


def check_hardening(report: Report, where: str, pod_spec: Mapping[str, Any]) -> None:
    pod_security = pod_spec.get("securityContext", {})
    report.check(pod_security.get("runAsNonRoot") is True, f"{where}: runAsNonRoot")
    report.check(
        pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault",
        f"{where}: RuntimeDefault seccomp profile",
    )
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    for container in pod_spec["containers"]:
        security = container.get("securityContext", {})
        report.check(
            security.get("readOnlyRootFilesystem") is True
            and security.get("allowPrivilegeEscalation") is False
            and security.get("capabilities", {}).get("drop") == ["ALL"],
            f"{where}: read-only root, no privilege escalation, no capabilities",
        )
        report.check(
            any(
                m["mountPath"] == "/tmp" and "emptyDir" in volumes.get(m["name"], {})
                for m in container.get("volumeMounts", [])
            ),
            f"{where}: /tmp is an emptyDir",
        )


def check_observability(report: Report, rel: str, docs: list[dict[str, Any]]) -> None:
    """An overlay ships the alert rules and the dashboard as they are in the repository."""
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    rules = next((v for k, v in maps.items() if k.startswith("polar-prometheus-rules")), {})
    dashboard = maps.get("polar-grafana-dashboard", {})
    report.check(
        rules.get("alerts.yml") == (OBSERVABILITY / "prometheus/alerts.yml").read_text()
        and dashboard.get("polar.json")
        == (OBSERVABILITY / "grafana/dashboards/polar.json").read_text(),
        f"{rel}: ships the alert rules and the Grafana dashboard (deploy/observability)",
    )
