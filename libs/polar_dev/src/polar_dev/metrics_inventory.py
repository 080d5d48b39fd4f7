"""What the processes export at /metrics, as tests/metrics_inventory.yaml lists it: read by
the scrape test (tests/test_metrics_scrape.py: the live processes match it) and by the alert
rule and dashboard checks (tests/test_observability.py: their queries read only from it)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from polar_dev.paths import repo_root

Inventory = dict[str, dict[str, dict[str, Any]]]  # process -> family -> {type, labels}
OURS = ("polar_", "grpc_")
# The series of a family (the inventory lists counters by their `_total` name already).
SUFFIXES = {"counter": ("",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def inventory_path() -> Path:
    return repo_root() / "tests" / "metrics_inventory.yaml"


def load_inventory(path: Path | None = None) -> Inventory:
    data: Inventory = yaml.safe_load((path or inventory_path()).read_text())
    return data


def series_names(inventory: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> set[str]:
    """Every series name a query may use: `grpc_server_handling_seconds_bucket`, ..."""
    return {
        family + suffix
        for families in inventory.values()
        for family, spec in families.items()
        for suffix in SUFFIXES[spec["type"]]
    }


def families_of(text: str) -> dict[str, dict[str, Any]]:
    """Our families in a scrape that have samples, as the inventory lists them."""
    found = {}
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        if not name.startswith(OURS) or not family.samples:
            continue
        labels = {k for s in family.samples for k in s.labels} - {"le"}
        found[name] = {"type": family.type, "labels": sorted(labels)}
    return found
