"""NetworkPolicies evaluated on sample traffic: a small model of Kubernetes' semantics
(label selectors, namespace selectors, ipBlocks, ports; a pod selected by no policy of a
direction is open in that direction; a connection needs egress at the source and ingress at
the destination)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .common import Report, Service


def match_selector(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label selector semantics; an empty selector matches everything."""
    if selector is None:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


@dataclass(frozen=True)
class Peer:
    """A pod (namespace + labels) or an address outside the cluster."""

    namespace: str = ""
    pod_labels: tuple[tuple[str, str], ...] | None = None
    ip: str = ""

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.pod_labels or ())

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace}


def pod(namespace: str, labels: Mapping[str, str]) -> Peer:
    return Peer(namespace=namespace, pod_labels=tuple(sorted(labels.items())))


def peer_matches(rule_peer: Mapping[str, Any], policy_ns: str, other: Peer) -> bool:
    if "ipBlock" in rule_peer:
        if other.pod_labels is not None:
            return False  # pod traffic is matched by selectors here, not by pod IPs
        block = rule_peer["ipBlock"]
        address = ipaddress.ip_address(other.ip)
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except", [])
        )
    if other.pod_labels is None:
        return False
    if "namespaceSelector" in rule_peer:
        if not match_selector(rule_peer["namespaceSelector"], other.namespace_labels):
            return False
    elif other.namespace != policy_ns:
        return False
    return match_selector(rule_peer.get("podSelector"), other.labels)


def direction_allowed(
    policies: list[dict[str, Any]], subject: Peer, other: Peer, port: int, protocol: str, kind: str
) -> bool:
    """Whether `subject` (a pod of ours) may receive from / send to `other` on port."""
    key, peers_key = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
    selecting = [
        p
        for p in policies
        if p["metadata"].get("namespace", "") == subject.namespace
        and kind in p["spec"].get("policyTypes", ["Ingress"])
        and match_selector(p["spec"].get("podSelector"), subject.labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(key) or []:
            ports = rule.get("ports")
            if ports and not any(_port_matches(p, port, protocol) for p in ports):
                continue
            peers = rule.get(peers_key)
            if not peers or any(peer_matches(r, subject.namespace, other) for r in peers):
                return True
    return False


def _port_matches(rule: Mapping[str, Any], port: int, protocol: str) -> bool:
    """A NetworkPolicyPort: no port (all), one port, or a range (port..endPort)."""
    if rule.get("protocol", "TCP") != protocol:
        return False
    first = rule.get("port")
    return first is None or first <= port <= rule.get("endPort", first)


def connection_allowed(
    policies: list[dict[str, Any]],
    ours: set[Peer],
    source: Peer,
    dest: Peer,
    port: int,
    protocol: str = "TCP",
) -> bool:
    if source in ours and not direction_allowed(policies, source, dest, port, protocol, "Egress"):
        return False
    return not (
        dest in ours and not direction_allowed(policies, dest, source, port, protocol, "Ingress")
    )


def check_network_policies(
    report: Report,
    rel: str,
    namespace: str,
    docs: list[dict[str, Any]],
    overlay: bool,
    services: list[Service],
) -> None:
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    report.check(
        any(
            p["spec"].get("podSelector") in ({}, None)
            and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress")
            and not p["spec"].get("egress")
            for p in policies
        ),
        f"{rel}: a default-deny NetworkPolicy",
    )
    pods: dict[str, Peer] = {}
    for workload in [d for d in docs if d["kind"] in ("Deployment", "Job")]:
        labels = workload["spec"]["template"]["metadata"]["labels"]
        pods[labels.get("app.kubernetes.io/name", workload["metadata"]["name"])] = pod(
            namespace, labels
        )
    ours = set(pods.values())
    if not {"gateway", "organization", "repository", "migrate"} <= pods.keys():
        report.check(False, f"{rel}: pods for the traffic checks", str(sorted(pods)))
        return
    gateway, org, repo = pods["gateway"], pods["organization"], pods["repository"]
    migrate = pods["migrate"]
    elsewhere = pod("elsewhere", {"app": "anything"})
    ingress_controller = pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
    monitoring = pod("monitoring", {"app.kubernetes.io/name": "prometheus"})
    nats = pod("nats", {"app.kubernetes.io/name": "nats"})
    dns = pod("kube-system", {"k8s-app": "kube-dns"})
    github = Peer(ip="140.82.112.3")
    private = Peer(ip="10.99.0.1")
    pg_policy = next((p for p in policies if p["metadata"]["name"] == "egress-postgres"), None)
    pg_cidr = (
        pg_policy["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"] if pg_policy else "0.0.0.0/0"
    )
    net = ipaddress.ip_network(pg_cidr)
    postgres = Peer(
        ip=str(net.network_address + 5 if net.num_addresses > 8 else net.network_address)
    )

    def allowed(source: Peer, dest: Peer, port: int, protocol: str = "TCP") -> bool:
        return connection_allowed(policies, ours, source, dest, port, protocol)

    expectations: list[tuple[str, bool, bool]] = [
        ("ingress controller -> gateway:8000", allowed(ingress_controller, gateway, 8000), True),
        ("other namespace -> organization:50051", allowed(elsewhere, org, 50051), False),
        ("other namespace -> repository:50052", allowed(elsewhere, repo, 50052), False),
        ("other namespace -> migrate", allowed(elsewhere, migrate, 8000), False),
        (
            "ingress controller -> organization:50051",
            allowed(ingress_controller, org, 50051),
            False,
        ),
        ("gateway -> organization:50051", allowed(gateway, org, 50051), True),
        ("gateway -> repository:50052", allowed(gateway, repo, 50052), True),
        ("organization -> repository:50052", allowed(org, repo, 50052), True),
        ("repository -> organization:50051", allowed(repo, org, 50051), True),
        ("migrate -> organization:50051", allowed(migrate, org, 50051), False),
        ("monitoring -> organization metrics:9090", allowed(monitoring, org, 9090), True),
        ("other namespace -> organization metrics:9090", allowed(elsewhere, org, 9090), False),
        ("monitoring -> gateway metrics:9090", allowed(monitoring, gateway, 9090), True),
        ("other namespace -> gateway metrics:9090", allowed(elsewhere, gateway, 9090), False),
        (
            "ingress controller -> gateway metrics:9090",
            allowed(ingress_controller, gateway, 9090),
            False,
        ),
        ("organization -> NATS:4222", allowed(org, nats, 4222), True),
        ("repository -> NATS:4222", allowed(repo, nats, 4222), True),
        ("gateway -> NATS:4222", allowed(gateway, nats, 4222), True),
        ("migrate -> NATS:4222", allowed(migrate, nats, 4222), False),
        ("organization -> PostgreSQL:5432", allowed(org, postgres, 5432), True),
        ("repository -> PostgreSQL:5432", allowed(repo, postgres, 5432), True),
        ("migrate -> PostgreSQL:5432", allowed(migrate, postgres, 5432), True),
        ("gateway -> PostgreSQL:5432", allowed(gateway, postgres, 5432), False),
        ("gateway -> GitHub:443", allowed(gateway, github, 443), True),
        ("organization -> GitHub:443", allowed(org, github, 443), True),
        ("repository -> GitHub:443", allowed(repo, github, 443), True),
        ("migrate -> GitHub:443", allowed(migrate, github, 443), False),
        ("repository -> private address:443", allowed(repo, private, 443), False),
        ("every pod -> DNS:53/UDP", all(allowed(p, dns, 53, "UDP") for p in ours), True),
        ("organization -> other namespace:80", allowed(org, elsewhere, 80), False),
    ]
    # Every other domain service (`make new-service`) gets the same treatment as the first
    # two, except GitHub, which only the processes that talk to it reach.
    for service in services:
        other = pods.get(service.name)
        if service.name in ("gateway", "organization", "repository") or other is None:
            continue
        name, port = service.name, service.port
        expectations += [
            (f"gateway -> {name}:{port}", allowed(gateway, other, port), True),
            (f"repository -> {name}:{port}", allowed(repo, other, port), True),
            (f"{name} -> organization:50051", allowed(other, org, 50051), True),
            (f"other namespace -> {name}:{port}", allowed(elsewhere, other, port), False),
            (f"migrate -> {name}:{port}", allowed(migrate, other, port), False),
            (f"monitoring -> {name} metrics:9090", allowed(monitoring, other, 9090), True),
            (f"{name} -> NATS:4222", allowed(other, nats, 4222), True),
            (f"{name} -> PostgreSQL:5432", allowed(other, postgres, 5432), True),
            (f"{name} -> GitHub:443", allowed(other, github, 443), False),
        ]
    if overlay:
        # An environment narrows the base's wide rules: only the ingress controller reaches
        # the gateway, only the database's range is reachable on 5432.
        expectations += [
            ("other namespace -> gateway:8000", allowed(elsewhere, gateway, 8000), False),
            ("organization -> any address:5432", allowed(org, Peer(ip="203.0.113.9"), 5432), False),
        ]
    wrong = [
        f"{name} is {'allowed' if got else 'denied'}"
        for name, got, want in expectations
        if got != want
    ]
    report.check(
        not wrong,
        f"{rel}: NetworkPolicies allow exactly the expected traffic ({len(expectations)} cases)",
        "; ".join(wrong),
    )
