"""NATS subscribers: GitHub installation webhooks, from the gateway via JetStream."""

from __future__ import annotations

import json

import structlog
from polar_kit.consumer import Delivery, Reject, Retry
from sqlalchemy.ext.asyncio import AsyncSession

from . import service
from .exceptions import OrganizationNotFound
from .github import InvalidPayload, parse_installation

log = structlog.get_logger()

INSTALLATION_ACTIONS = ("created", "deleted", "suspend", "unsuspend", "new_permissions_accepted")
INSTALLATION_SUBJECTS = [f"github.webhook.installation.{a}" for a in INSTALLATION_ACTIONS]


async def on_installation(session: AsyncSession, msg: Delivery) -> None:
    """Mirror an installation's lifecycle. Any order and any number of repeats end in the
    same state: stale updates are skipped, deletions leave a tombstone, and an event about
    an installation not seen yet is retried (then parked) rather than dropped."""
    action = msg.subject.rsplit(".", 1)[-1]
    try:
        payload = json.loads(msg.data)
        installation = parse_installation(payload["installation"])
        sender_id = int((payload.get("sender") or {}).get("id") or 0)
    except (ValueError, KeyError, TypeError, InvalidPayload) as e:
        raise Reject(f"malformed installation webhook: {e!r}") from e

    try:
        if action == "created":
            org = await service.upsert_installation(session, installation)
            if org is not None and sender_id:
                await service.add_sender_as_member(session, org, sender_id)
        elif action == "deleted":
            await service.delete_installation(session, installation.id)
        elif action == "suspend":
            await service.suspend_installation(session, installation)
        elif action == "unsuspend":
            await service.unsuspend_installation(session, installation)
        elif action == "new_permissions_accepted":
            await service.accept_permissions(session, installation)
        else:
            log.info("installation action ignored", action=action)
    except OrganizationNotFound as e:
        raise Retry(f"installation {installation.id} is not known yet") from e
