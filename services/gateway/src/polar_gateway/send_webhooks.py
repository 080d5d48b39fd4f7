"""`python -m polar_gateway.send_webhooks PATH...`: sign and POST recorded GitHub deliveries.

Each PATH is a payload file or a folder of them laid out as `<event>/<name>.json` (the event
is the parent folder's name, as in polar_dev/fixtures/github/webhooks). Deliveries are signed
with POLAR_GITHUB_WEBHOOK_SECRET (or --secret) and sent to the gateway (--url, default
http://127.0.0.1:$POLAR_GATEWAY_HTTP_PORT), each with a fresh X-GitHub-Delivery. Under
`make dev`, the gateway's port and secret come from `.dev/env`.

Deliveries go out in the order GitHub would have sent them, not in file-name order: parents
first (installations, then their repositories), then by the payload's own timestamp (the
issue's or pull request's `updated_at`...), then by action (created/opened before edits,
deleted/removed last). Otherwise `issues/deleted.payload.json` would arrive before
`issues/opened.payload.json` and leave nothing to see.

    W=libs/polar_dev/src/polar_dev/fixtures/github/webhooks
    python -m polar_gateway.send_webhooks $W/installation $W/installation_repositories $W/issues
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from polar_db.devenv import announce, load_dev_env

from .settings import GatewaySettings

# Events that others depend on go first; everything else after them.
EVENT_RANK = {"installation": 0, "installation_repositories": 1, "repository": 2}
# Within one timestamp: what creates before what changes, what removes last.
FIRST_ACTIONS = ("created", "opened", "added")
LAST_ACTIONS = ("deleted", "removed", "transferred")
# Where a payload says when it happened, most specific first.
TIMESTAMP_PATHS = (
    ("issue", "updated_at"),
    ("pull_request", "updated_at"),
    ("comment", "updated_at"),
    ("installation", "updated_at"),
    ("repository", "updated_at"),
)


def _timestamp(payload: dict[str, Any]) -> str:
    for outer, inner in TIMESTAMP_PATHS:
        container = payload.get(outer)
        value = container.get(inner) if isinstance(container, dict) else None
        if isinstance(value, str):
            return value  # ISO 8601 in UTC: sorts as text
    return ""


def delivery_order(event: str, file: Path) -> tuple[int, str, int, str]:
    """Sort key: dependency rank, the payload's own time, action rank, file name."""
    try:
        payload = json.loads(file.read_bytes())
    except ValueError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    action = str(payload.get("action", ""))
    action_rank = 0 if action in FIRST_ACTIONS else 2 if action in LAST_ACTIONS else 1
    return EVENT_RANK.get(event, 3), _timestamp(payload), action_rank, str(file)


def payloads(paths: Sequence[Path]) -> list[tuple[str, Path]]:
    """(event, file) of every payload under `paths`, in delivery order."""
    found = []
    for path in paths:
        files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
        found += [(file.parent.name, file) for file in files]
    return sorted(found, key=lambda item: delivery_order(*item))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m polar_gateway.send_webhooks")
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--url", default=None, help="the gateway's base URL")
    parser.add_argument("--secret", default=None, help="default: POLAR_GITHUB_WEBHOOK_SECRET")
    args = parser.parse_args(argv)
    dev_env = load_dev_env()
    settings = GatewaySettings()
    port = os.environ.get("POLAR_GATEWAY_HTTP_PORT", str(settings.gateway_http_port))
    base = (args.url or f"http://127.0.0.1:{port}").rstrip("/")
    if args.url:
        print(f"gateway: {base} (from --url)", file=sys.stderr)
    else:
        announce("gateway", base, "POLAR_GATEWAY_HTTP_PORT", dev_env)
    secret = (args.secret or settings.github_webhook_secret.get_secret_value()).encode()
    failed = 0
    with httpx.Client(base_url=base, timeout=30) as http:
        for event, file in payloads(args.paths):
            body = file.read_bytes()
            signature = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
            response = http.post(
                "/api/v2/integrations/github/webhook",
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-GitHub-Event": event,
                    "X-GitHub-Delivery": str(uuid.uuid4()),
                    "X-Hub-Signature-256": signature,
                },
            )
            failed += response.status_code >= 300
            print(f"{response.status_code} {event:<24} {file}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
