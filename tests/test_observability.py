"""The alerting rules and the Grafana dashboard (deploy/observability) as promtool and Grafana
would take them, without either: the rule files' structure, every query parsed as PromQL
(promql-parser), and every metric a query reads exported by some process (the inventory
that test_metrics_scrape.py checks against a live scrape)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from polar_dev.metrics_inventory import load_inventory, series_names

ROOT = Path(__file__).resolve().parents[1]
OBSERVABILITY = ROOT / "deploy/observability"
RULES = OBSERVABILITY / "prometheus/alerts.yml"
RULE_TESTS = OBSERVABILITY / "prometheus/alerts_test.yml"
DASHBOARD = OBSERVABILITY / "grafana/dashboards/polar.json"
OPERATIONS = ROOT / "docs/operations.md"
# Series Prometheus makes itself: a rule may read them too.
PROMETHEUS_OWN = {"up"}
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
RULE_KEYS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
SEVERITIES = {"critical", "warning", "info"}
# Grafana's variables, replaced before a query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}


def selectors(node: Any) -> Iterator[str]:
    """The metric names a parsed PromQL expression reads."""
    if isinstance(node, promql_parser.VectorSelector):
        if node.name:
            yield node.name
        return
    for attribute in ("lhs", "rhs", "expr", "args", "vector_selector", "param"):
        child = getattr(node, attribute, None)
        for c in child if isinstance(child, list) else [child]:
            if c is not None:
                yield from selectors(c)


def metrics_read(expr: str) -> set[str]:
    """Parses `expr` (raises ValueError on a PromQL syntax error)."""
    return set(selectors(promql_parser.parse(expr)))


def exported() -> set[str]:
    return series_names(load_inventory()) | PROMETHEUS_OWN


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors."""
    return {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", markdown, re.M)
    }


def test_the_metric_extractor_finds_every_selector() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{x=~"y|z"}[5m])))'
        " / on (instance) (b offset 5m) and c > 0"
    )
    assert metrics_read(expr) == {"a_bucket", "b", "c"}
    with pytest.raises(ValueError, match="parenthesis"):
        metrics_read("sum(rate(a[5m])")


def test_rule_files_have_the_structure_prometheus_loads() -> None:
    data = yaml.safe_load(RULES.read_text())
    assert set(data) == {"groups"}
    names = [group["name"] for group in data["groups"]]
    assert len(names) == len(set(names)), "group names are unique"
    alerts = []
    for group in data["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}, group["name"]
        assert group["rules"], group["name"]
        for rule in group["rules"]:
            alert = rule.get("alert")
            assert isinstance(alert, str), rule
            assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", alert), rule
            alerts.append(alert)
            assert set(rule) <= RULE_KEYS, (alert, set(rule) - RULE_KEYS)
            assert isinstance(rule["expr"], str), alert
            assert rule["expr"].strip(), alert
            for key in ("for", "keep_firing_for"):
                if key in rule:
                    assert DURATION.match(str(rule[key])), (alert, key, rule[key])
            labels = rule.get("labels") or {}
            assert labels.get("severity") in SEVERITIES, alert
            assert all(isinstance(v, str) for v in labels.values()), alert
            annotations = rule.get("annotations") or {}
            assert annotations.get("summary"), alert
            for text in annotations.values():
                # Go templates: balanced {{ }} and only the variables Prometheus provides.
                assert text.count("{{") == text.count("}}"), (alert, text)
                for variable in re.findall(r"\$(\w+)", text):
                    assert variable in ("labels", "value", "externalLabels"), (alert, variable)
    assert len(alerts) == len(set(alerts)), "alert names are unique"


def test_every_alert_has_a_runbook_entry() -> None:
    headings = anchors(OPERATIONS.read_text())
    for rule in rules():
        runbook = rule["annotations"].get("runbook", "")
        page, _, anchor = runbook.partition("#")
        assert page == "docs/operations.md", (rule["alert"], runbook)
        assert anchor in headings, (rule["alert"], runbook)
        assert anchor == rule["alert"].lower()


def test_every_alert_has_promtool_cases_on_exported_series() -> None:
    """alerts_test.yml (run by promtool where it is installed) fires every alert, and feeds
    it only series the processes export."""
    data = yaml.safe_load(RULE_TESTS.read_text())
    assert data["rule_files"] == [RULES.name]
    fired, known = set(), exported()
    for case in data["tests"]:
        for series in case["input_series"]:
            assert metrics_read(series["series"]) <= known, series["series"]
        for test in case["alert_rule_test"]:
            if test.get("exp_alerts"):
                fired.add(test["alertname"])
    assert fired == {rule["alert"] for rule in rules()}


def test_alert_rules_read_only_exported_metrics() -> None:
    known = exported()
    for rule in rules():
        used = metrics_read(rule["expr"])
        assert used, rule["alert"]
        assert used <= known, (rule["alert"], sorted(used - known))


def test_the_alerts_the_issue_asks_for_exist() -> None:
    """Backlog age, parked > 0, consumer lag, error ratio, sync stalled."""
    reading = {rule["alert"]: metrics_read(rule["expr"]) for rule in rules()}
    for metric in (
        "polar_outbox_oldest_age_seconds",
        "polar_parked_messages",
        "polar_consumer_pending_messages",
        "grpc_server_handled_total",
        "polar_gateway_http_requests_total",
        "polar_github_sync_idle_seconds",
    ):
        assert any(metric in used for used in reading.values()), metric


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in dashboard["panels"]:
        for nested in [panel, *panel.get("panels", [])]:
            for target in nested.get("targets", []):
                yield nested["title"], target["expr"]


def test_the_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"]
    assert dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    known = exported()
    queries = list(dashboard_queries(dashboard))
    assert queries
    read: set[str] = set()
    for title, expr in queries:
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, (title, expr)
        used = metrics_read(expr)
        assert used, title
        assert used <= known, (title, sorted(used - known))
        read |= used
    # Every family of ours is on the dashboard (a histogram by any of its series).
    families = {name for process in load_inventory().values() for name in process}
    shown = {f for f in families if any(s == f or s.startswith(f + "_") for s in read)}
    assert shown == families, sorted(families - shown)


def test_the_operations_guide_lists_every_metric() -> None:
    text = OPERATIONS.read_text()
    families = {name for process in load_inventory().values() for name in process}
    listed = set(re.findall(r"^\| `([a-z_:]+)` \|", text, re.M))
    assert families <= listed, sorted(families - listed)
    assert listed <= families, sorted(listed - families)


def test_prometheus_loads_the_rules_compose_mounts() -> None:
    config = yaml.safe_load((OBSERVABILITY / "prometheus/prometheus.yml").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = dict(
        str(v).split(":")[:2] for v in compose["services"]["prometheus"].get("volumes", [])
    )
    mounted = {target: source for source, target in mounts.items()}
    for rule_file in config["rule_files"]:
        assert (ROOT / mounted[rule_file]).resolve() == RULES.resolve(), rule_file
