"""NATS subscribers: GitHub webhooks (from the gateway via JetStream) and the organization
service's events.

Both consumers run in batch mode (polar_kit.consumer): a fetch of up to 256 deliveries is
one transaction. Within a batch, installation and repository events go first, one at a time
under a savepoint (they are rare, and one failing must not undo the others); then every
issue and pull request event of the batch is stored with one upsert per table (ingest.py).

Order and repeats: the organization a webhook names is taken from this service's read model
or, when not known yet, written to it from the webhook itself (known.py): no delivery waits
for the organization service. An issue or pull request of a repository we do not know yet is
retried for up to `consumer_wait_max_seconds` (then parked for an operator), and so is a
repository whose new name another one still holds (renames seen out of order); an older
object never overwrites a newer one and a repeat changes nothing (see ingest.py); events
about a deleted organization or repository are dropped, so late deliveries cannot revive
them.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
import structlog
from google.protobuf.message import DecodeError
from nats.js import JetStreamContext
from polar import catalog
from polar.organization.v1 import events_pb2 as organization_events
from polar.organization.v1 import organization_pb2
from polar_db.models.repository import KnownOrganization, Repository
from polar_kit import tracing
from polar_kit.consumer import Consumer, Delivery, Reject, Retry
from polar_kit.errors import UNIQUE_VIOLATION, sqlstate
from polar_kit.nats import EVENTS, WEBHOOKS
from polar_kit.outage import brief
from polar_kit.settings import ServiceSettings
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import ingest, known
from .ingest import InvalidObject

log = structlog.get_logger()

WEBHOOKS_CONSUMER = "repository-webhooks"
ORGANIZATION_EVENTS_CONSUMER = "repository-organization-events"
WEBHOOK_SUBJECTS = [
    "github.webhook.installation.created",
    "github.webhook.installation_repositories.*",
    "github.webhook.repository.*",
    "github.webhook.issues.*",
    "github.webhook.pull_request.*",
]
ORGANIZATION_EVENTS = [
    e.subject
    for e in (
        catalog.ORGANIZATION_CREATED,
        catalog.ORGANIZATION_UPDATED,
        catalog.ORGANIZATION_SUSPENDED,
        catalog.ORGANIZATION_UNSUSPENDED,
        catalog.ORGANIZATION_DELETED,
    )
]

# A payload lacking what we need, or of the wrong shape: it will never succeed.
MALFORMED = (InvalidObject, KeyError, TypeError, ValueError, AttributeError)


# Re-reads an issue ("issues") or pull request ("pulls") of a repository, by number, from
# GitHub: how a same-second tie is resolved (refresh.Refresher).
Refresh = Callable[[uuid.UUID, str, int], None]


def consumers(
    settings: ServiceSettings,
    js: JetStreamContext,
    sessionmaker: async_sessionmaker[AsyncSession],
    refresh: Refresh | None = None,
    repair: known.OnGap | None = None,
) -> list[Consumer]:
    """The JetStream consumers of the repository service (durable names are stable).

    Without `refresh` (no GitHub App configured), a same-second tie goes to the delivery
    handled last. `repair` is told of each organization whose events skipped versions
    (read_model.Repairer: asks the organization service in the background)."""
    common: dict[str, Any] = {"sessionmaker": sessionmaker, "js": js, "settings": settings}
    return [
        Consumer(
            WEBHOOKS_CONSUMER,
            WEBHOOKS,
            WEBHOOK_SUBJECTS,
            batch_handler=functools.partial(on_webhooks, refresh=refresh),
            **common,
        ),
        Consumer(
            ORGANIZATION_EVENTS_CONSUMER,
            EVENTS,
            ORGANIZATION_EVENTS,
            batch_handler=functools.partial(on_organization_events, repair=repair),
            **common,
        ),
    ]


@dataclass(frozen=True, slots=True)
class Webhook:
    delivery: Delivery
    event: str
    action: str
    payload: dict[str, Any]


def parse(delivery: Delivery) -> Webhook:
    """`github.webhook.<event>.<action>` and its JSON body (orjson: the gateway's parser, so
    what it accepted parses here too; its errors are ValueErrors)."""
    event, action = delivery.subject.split(".")[-2:]
    payload = orjson.loads(delivery.data)
    if not isinstance(payload, dict):
        raise InvalidObject("the payload is not a JSON object")
    return Webhook(delivery, event, action, payload)


async def on_webhooks(
    session: AsyncSession, deliveries: list[Delivery], *, refresh: Refresh | None = None
) -> dict[str, Retry | Reject]:
    failures: dict[str, Retry | Reject] = {}
    structural: list[Webhook] = []
    items: list[Webhook] = []
    for delivery in deliveries:
        try:
            webhook = parse(delivery)
        except MALFORMED as e:
            failures[delivery.message_id] = Reject(f"malformed webhook: {e!r}")
            continue
        (items if webhook.event in ("issues", "pull_request") else structural).append(webhook)

    for webhook in structural:
        try:
            async with session.begin_nested():  # undone alone if it fails
                await on_structural(session, webhook)
        except (Retry, Reject) as e:
            failures[webhook.delivery.message_id] = e
        except MALFORMED as e:
            failures[webhook.delivery.message_id] = Reject(f"malformed webhook: {e!r}")
        except sa.exc.IntegrityError as e:
            if sqlstate(e) != UNIQUE_VIOLATION:
                raise
            # A live name clash: renames seen out of order. The other rename resolves it.
            failures[webhook.delivery.message_id] = Retry(f"name clash: {brief(e)}")

    if items:
        failures |= await on_items(session, items, refresh)
    return failures


# --- installations and repositories ----------------------------------------------------------


async def organization_of(
    session: AsyncSession, account: Any, installation: Any = None, *, installed: bool = False
) -> KnownOrganization | None:
    """The organization of a GitHub account object of a webhook (known, or, for an
    installation webhook, written now from it: known.organization_of); None when it is
    deleted; Retry when a repository webhook comes before its installation."""
    account_id = _id(account)
    login = account.get("login") if isinstance(account, Mapping) else None
    if account_id is None:
        raise Reject("the webhook names no account")
    suspended = isinstance(installation, Mapping) and bool(installation.get("suspended_at"))
    try:
        return await known.organization_of(
            session,
            known.Account(
                account_id, login if isinstance(login, str) else None, _id(installation), suspended
            ),
            installed=installed,
        )
    except known.NotKnownYet as e:
        raise Retry(f"organization of {e} is not known yet") from e


def _id(obj: Any) -> int | None:
    value = obj.get("id") if isinstance(obj, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def on_structural(session: AsyncSession, webhook: Webhook) -> None:
    payload, action = webhook.payload, webhook.action
    installation = payload.get("installation")
    if webhook.event in ("installation", "installation_repositories"):
        account = installation.get("account") if isinstance(installation, dict) else None
        org = await organization_of(session, account, installation, installed=True)
        if org is None:
            return
        if webhook.event == "installation":  # created: the repositories it was given
            rows = [ingest.repository_row(r) for r in payload.get("repositories") or []]
            await ingest.upsert_repositories(session, org.id, rows, revive=True)
        elif action == "added":
            rows = [ingest.repository_row(r) for r in payload["repositories_added"]]
            await ingest.upsert_repositories(session, org.id, rows, revive=True)
        elif action == "removed":
            ids = [ingest.repository_row(r)["external_id"] for r in payload["repositories_removed"]]
            await ingest.delete_repositories(
                session,
                Repository.external_id.in_(ids),
                Repository.organization_id == org.id,
                content=False,  # access removed: a later re-add brings it all back
            )
        return

    # repository.<action>
    repo = payload["repository"]
    row = ingest.repository_row(repo)
    if action == "deleted":
        await ingest.delete_repositories(
            session, Repository.external_id == row["external_id"], content=True
        )
        return
    # After a transfer the owner is the new one: the repository moves to its organization.
    org = await organization_of(session, repo.get("owner"), installation)
    if org is not None:
        await ingest.upsert_repositories(session, org.id, [row])


# --- issues and pull requests ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KnownRepository:
    id: uuid.UUID
    organization_id: uuid.UUID
    gone: bool  # the repository or its organization is deleted


async def known_repositories(
    session: AsyncSession, external_ids: Sequence[int]
) -> dict[int, KnownRepository]:
    rows = await session.execute(
        sa.select(
            Repository.external_id,
            Repository.id,
            Repository.organization_id,
            sa.or_(Repository.deleted_at.is_not(None), KnownOrganization.deleted_at.is_not(None)),
        )
        .outerjoin(KnownOrganization, KnownOrganization.id == Repository.organization_id)
        .where(Repository.external_id.in_(external_ids))
    )
    return {ext: KnownRepository(id, org, bool(gone)) for ext, id, org, gone in rows}


def _repository_ids(webhook: Webhook) -> list[int]:
    ids = [_id(webhook.payload.get("repository"))]
    changes = webhook.payload.get("changes")
    if webhook.action == "transferred" and isinstance(changes, dict):
        ids.append(_id(changes.get("new_repository")))
    return [i for i in ids if i is not None]


async def on_items(
    session: AsyncSession, webhooks: list[Webhook], refresh: Refresh | None = None
) -> dict[str, Retry | Reject]:
    """Every issues.* and pull_request.* delivery of a batch, stored with one statement per
    kind of write. Same-second ties are re-read from GitHub with `refresh`."""
    failures: dict[str, Retry | Reject] = {}
    known = await known_repositories(
        session, sorted({i for w in webhooks for i in _repository_ids(w)})
    )
    issues: list[ingest.Row] = []
    deleted_issues: list[ingest.Row] = []
    pulls: list[ingest.Row] = []
    # Each event carries the delivery it came from, not the whole batch's (decision 0023).
    issue_origins: dict[int, Mapping[str, str]] = {}
    pull_origins: dict[int, Mapping[str, str]] = {}
    for webhook in webhooks:
        message_id = webhook.delivery.message_id
        origin = webhook.delivery.headers
        try:
            repository_id = _id(webhook.payload["repository"])
            repo = known.get(repository_id) if repository_id else None
            if repo is None:
                failures[message_id] = Retry(f"repository {repository_id} is not known yet")
                continue
            if repo.gone:
                continue
            ids = {"organization_id": repo.organization_id, "repository_id": repo.id}
            if webhook.event == "pull_request":
                pulls.append(ingest.pull_request_row(webhook.payload["pull_request"], **ids))
                pull_origins[pulls[-1]["external_id"]] = origin
                continue
            if ingest.is_pull_request(webhook.payload["issue"]):
                continue  # GitHub's issue view of a pull request: pull_request.* carries it
            row = ingest.issue_row(webhook.payload["issue"], **ids)
            issue_origins[row["external_id"]] = origin
            if webhook.action == "deleted":
                deleted_issues.append(row)
            elif webhook.action == "transferred":
                # Gone from this repository; it lives on as a new issue (new id) in the
                # target repository, stored here when that repository is ours.
                deleted_issues.append(row)
                changes = webhook.payload["changes"]
                target = known.get(_id(changes["new_repository"]) or 0)
                if target is not None and not target.gone:
                    issues.append(
                        ingest.issue_row(
                            changes["new_issue"],
                            organization_id=target.organization_id,
                            repository_id=target.id,
                        )
                    )
                    issue_origins[issues[-1]["external_id"]] = origin
            else:
                issues.append(row)
        except MALFORMED as e:
            failures[message_id] = Reject(f"malformed {webhook.event} webhook: {e!r}")
    ties: dict[str, list[ingest.Row]] | None = {"issues": [], "pulls": []} if refresh else None
    if issues:
        await ingest.upsert_issues(
            session, issues, ties=ties["issues"] if ties else None, origins=issue_origins
        )
    if deleted_issues:
        await ingest.delete_issues(session, deleted_issues, issue_origins)
    if pulls:
        await ingest.upsert_pull_requests(
            session, pulls, ties=ties["pulls"] if ties else None, origins=pull_origins
        )
    if refresh is not None and ties is not None:
        for kind, rows in ties.items():
            for row in rows:
                log.info("same-second tie, re-reading from GitHub", kind=kind, number=row["number"])
                refresh(row["repository_id"], kind, row["number"])
    return failures


# --- the organization service's events -------------------------------------------------------

# Events carrying the whole organization: subject -> its parser.
_ORGANIZATION_SNAPSHOTS: dict[str, Callable[[bytes], organization_pb2.Organization]] = {
    catalog.ORGANIZATION_CREATED.subject: lambda data: (
        organization_events.OrganizationCreated.FromString(data).organization
    ),
    catalog.ORGANIZATION_UPDATED.subject: lambda data: (
        organization_events.OrganizationUpdated.FromString(data).organization
    ),
    catalog.ORGANIZATION_SUSPENDED.subject: lambda data: (
        organization_events.OrganizationSuspended.FromString(data).organization
    ),
    catalog.ORGANIZATION_UNSUSPENDED.subject: lambda data: (
        organization_events.OrganizationUnsuspended.FromString(data).organization
    ),
}


async def on_organization_events(
    session: AsyncSession, deliveries: list[Delivery], repair: known.OnGap | None = None
) -> dict[str, Retry | Reject]:
    """The organization service's organizations, kept as this service's read model
    (known.py); polar.organization.v1.deleted also soft-deletes the organization's
    repositories, issues and pull requests and cancels its open rewards (idempotent)."""
    failures: dict[str, Retry | Reject] = {}
    for delivery in deliveries:
        try:
            # The events it causes carry its own ids and trace, not the batch's.
            with tracing.handling_message(delivery.headers):
                await _on_organization_event(session, delivery.subject, delivery.data, repair)
        except (DecodeError, ValueError) as e:
            failures[delivery.message_id] = Reject(f"malformed organization event: {e!r}")
    return failures


async def _on_organization_event(
    session: AsyncSession, subject: str, data: bytes, repair: known.OnGap | None
) -> None:
    if snapshot := _ORGANIZATION_SNAPSHOTS.get(subject):
        await known.apply_organization(session, snapshot(data), on_gap=repair)
    elif subject == catalog.ORGANIZATION_DELETED.subject:
        event = organization_events.OrganizationDeleted.FromString(data)
        organization_id = uuid.UUID(event.organization_id)
        if not await known.apply_deleted(
            session, organization_id, event.external_id, event.name, event.version
        ):
            return  # a repeat, or older than a new installation of the account
        deleted = await ingest.delete_organization_content(session, organization_id)
        log.info(
            "organization content deleted",
            organization_id=str(organization_id),
            repositories=len(deleted),
        )
