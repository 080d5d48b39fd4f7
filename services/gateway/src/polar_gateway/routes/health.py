"""Probes (outside the API versions): /healthz, /readyz. Metrics are served on
POLAR_METRICS_PORT, not here: the public port shows no operations data."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ..auth import GatewayDep
from ..schemas import Readiness
from ._common import json_response

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=dict[str, str])
async def healthz() -> dict[str, str]:
    """The process is up and serving HTTP (liveness: restart when this fails)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(gateway: GatewayDep) -> Response:
    """Both services answer SERVING, NATS is connected, the revoked sessions are loaded and
    the live stream's feed is up (readiness: route traffic here; before that every session
    token gets 503)."""
    services = await gateway.clients.healthy()
    checks = {
        **services,
        "nats": gateway.bus.connected,
        "sessions": gateway.revocations.loaded.is_set(),
        "stream": gateway.feed.ready.is_set(),
    }
    ready = all(checks.values())
    return json_response(Readiness(ready=ready, checks=checks), 200 if ready else 503)
