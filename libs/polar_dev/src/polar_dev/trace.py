"""`python -m polar_dev.trace ID`: a delivery's (or a request's) trace as a tree.

Reads the spans `make dev` writes (POLAR_TRACE_DIR: .dev/traces/<service>.<pid>.jsonl, see
polar_kit.tracing), finds the traces where ID is a GitHub delivery id, a request id or a
trace id, and prints each as a tree: span, service, duration and start after the trace's
start; a span's database queries are summed up on its line (`--queries`: one line each).
Traces that link to it (a batch that handled several deliveries) are named under it.
`make trace ID=...` runs it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .paths import dev_dir

IDS = ("polar.delivery", "polar.request_id")


def load(folder: Path) -> list[dict[str, Any]]:
    spans = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                spans.append(json.loads(line))
    return spans


def traces_of(spans: Iterable[dict[str, Any]], wanted: str) -> list[str]:
    """Trace ids where `wanted` is the trace id, a delivery id or a request id."""
    found: dict[str, None] = {}
    for span in spans:
        attributes = span.get("attributes") or {}
        if span["trace_id"] == wanted or any(attributes.get(k) == wanted for k in IDS):
            found[span["trace_id"]] = None
    return list(found)


def is_query(span: dict[str, Any]) -> bool:
    attributes = span.get("attributes") or {}
    return "db.system" in attributes or "db.system.name" in attributes


def render(spans: Sequence[dict[str, Any]], trace_id: str, queries: bool = False) -> list[str]:
    """The trace as a tree; database queries are summed up on their parent's line unless
    `queries`."""
    mine = sorted((s for s in spans if s["trace_id"] == trace_id), key=lambda s: s["start"])
    if not mine:
        return []
    ids = {s["span_id"] for s in mine}
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for span in mine:
        parent = span["parent_id"] if span["parent_id"] in ids else None
        children[parent].append(span)
    start = mine[0]["start"]
    end = max(s["end"] or s["start"] for s in mine)
    lines = [f"trace {trace_id}: {len(mine)} spans, {(end - start) / 1e6:.1f} ms"]

    def took(span: dict[str, Any]) -> float:
        return float((span["end"] or span["start"]) - span["start"]) / 1e6

    def walk(span: dict[str, Any], prefix: str, last: bool) -> None:
        status = "" if span["status"] != "ERROR" else "  ERROR"
        kids = children.get(span["span_id"], [])
        hidden = (
            [] if queries else [k for k in kids if is_query(k) and k["span_id"] not in children]
        )
        summed = f"  ({len(hidden)} queries, {sum(map(took, hidden)):.1f} ms)" if hidden else ""
        lines.append(
            f"{prefix}{'└─ ' if last else '├─ '}{span['name']}  [{span['service']}]"
            f"  {took(span):.1f} ms  @+{(span['start'] - start) / 1e6:.1f} ms{status}{summed}"
        )
        kids = [k for k in kids if k not in hidden]
        for i, kid in enumerate(kids):
            walk(kid, prefix + ("   " if last else "│  "), i == len(kids) - 1)

    roots = children[None]
    for i, root in enumerate(roots):
        walk(root, "", i == len(roots) - 1)
    linked = sorted(
        {
            s["trace_id"]
            for s in spans
            if s["trace_id"] != trace_id
            and any(link["trace_id"] == trace_id for link in s.get("links") or [])
        }
    )
    lines += [f"  linked from batch trace {t}" for t in linked]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m polar_dev.trace", description=__doc__)
    parser.add_argument("id", help="X-GitHub-Delivery, X-Request-ID or trace id")
    parser.add_argument("--dir", type=Path, default=None, help="default: <repo>/.dev/traces")
    parser.add_argument("--queries", action="store_true", help="a line per database query")
    args = parser.parse_args(argv)
    folder = args.dir or dev_dir() / "traces"
    spans = load(folder)
    found = traces_of(spans, args.id)
    if not found:
        print(f"no trace of {args.id} in {folder} ({len(spans)} spans)", file=sys.stderr)
        return 1
    for trace_id in found:
        print("\n".join(render(spans, trace_id, queries=args.queries)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
