"""`python -m polar_gateway.send_webhooks PATH...`: sign and POST recorded GitHub deliveries.

Each PATH is a payload file or a folder of them laid out as `<event>/<name>.json` (the event
is the parent folder's name, as in polar_dev/fixtures/github/webhooks). Deliveries are signed
with POLAR_GITHUB_WEBHOOK_SECRET (or --secret) and sent to the gateway (--url, default
http://127.0.0.1:$POLAR_GATEWAY_HTTP_PORT), each with a fresh X-GitHub-Delivery.

    W=libs/polar_dev/src/polar_dev/fixtures/github/webhooks
    python -m polar_gateway.send_webhooks $W/installation
    python -m polar_gateway.send_webhooks $W/issues
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from .settings import GatewaySettings


def payloads(paths: Sequence[Path]) -> Iterator[tuple[str, Path]]:
    for path in paths:
        files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
        for file in files:
            yield file.parent.name, file


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m polar_gateway.send_webhooks")
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--url", default=None, help="the gateway's base URL")
    parser.add_argument("--secret", default=None, help="default: POLAR_GITHUB_WEBHOOK_SECRET")
    args = parser.parse_args(argv)
    settings = GatewaySettings()
    port = os.environ.get("POLAR_GATEWAY_HTTP_PORT", str(settings.gateway_http_port))
    base = (args.url or f"http://127.0.0.1:{port}").rstrip("/")
    secret = (args.secret or settings.github_webhook_secret.get_secret_value()).encode()
    failed = 0
    with httpx.Client(base_url=base, timeout=30) as http:
        for event, file in payloads(args.paths):
            body = file.read_bytes()
            signature = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
            response = http.post(
                "/api/v1/integrations/github/webhook",
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
