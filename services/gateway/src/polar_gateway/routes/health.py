"""Probes and metrics (outside the API versions): /healthz, /readyz, /metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

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
    """Both services answer SERVING and NATS is connected (readiness: route traffic here)."""
    services = await gateway.clients.healthy()
    checks = {**services, "nats": gateway.bus.connected}
    ready = all(checks.values())
    return json_response(Readiness(ready=ready, checks=checks), 200 if ready else 503)


@router.get("/metrics", response_class=Response)
async def metrics() -> Response:
    body = await asyncio.to_thread(generate_latest, REGISTRY)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
