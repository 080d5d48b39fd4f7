"""Each service reads and writes its own tables only (decision 0021): checked in the code
(which models a service imports) and by the database (what a service's role may touch)."""

from __future__ import annotations

import ast
import importlib
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from polar_db.engine import create_engine, create_sessionmaker
from polar_db.models import ORGANIZATION, OWNERS, REPOSITORY, REWARD
from polar_db.models.repository import Repository
from polar_dev.infra import Infra
from polar_dev.pytest_plugin import temporary_database
from polar_kit.consumer import Delivery
from polar_repository.consumers import on_webhooks
from sqlalchemy.exc import ProgrammingError

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "libs/polar_dev/src/polar_dev/fixtures/github/webhooks"
# The schema whose tables each service's code may name (the gateway names none).
SERVICES = {
    "organization": ORGANIZATION,
    "repository": REPOSITORY,
    "reward": REWARD,
    "gateway": None,
}


# What gives access to tables (polar_db.devenv, a development helper, does not).
DATABASE_MODULES = ("polar_db.models", "polar_db.engine", "polar_db.upsert")


def _imported_models(path: Path) -> list[tuple[int, str, Any]]:
    """(line, name, object) of everything imported from the database modules in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(DATABASE_MODULES):
            module = importlib.import_module(node.module or "")
            found += [(node.lineno, a.name, getattr(module, a.name)) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name, None)
                for a in node.names
                if a.name.startswith(DATABASE_MODULES)
            ]
    return found


def _owner(obj: Any) -> str | None:
    """The schema of a model class or of an owner's models package; None for the rest."""
    table = getattr(obj, "__table__", None)
    if table is not None:
        return str(table.schema) if table.schema else None
    name = getattr(obj, "__name__", "")
    return next((o for o in OWNERS if name == f"polar_db.models.{o}"), None)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_a_service_imports_only_its_own_tables(service: str) -> None:
    own = SERVICES[service]
    wrong = []
    for path in sorted(ROOT.glob(f"services/{service}/src/**/*.py")):
        for line, name, obj in _imported_models(path):
            if own is None:  # the gateway never touches PostgreSQL
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {name}")
            elif (owner := _owner(obj)) not in (None, own):
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {name} ({owner})")
    assert not wrong, wrong


def test_the_check_sees_another_owners_table() -> None:
    """The static check is not vacuous: a table of the organization service is its."""
    [(_, _, obj)] = [
        m
        for m in _imported_models(Path(__file__))
        if m[1] == "Repository"  # imported above, as a test may
    ]
    assert _owner(obj) == REPOSITORY
    assert _owner(importlib.import_module("polar_db.models.organization")) == ORGANIZATION


@pytest.mark.parametrize(
    ("owner", "other"),
    [
        (ORGANIZATION, REPOSITORY),
        (REPOSITORY, ORGANIZATION),
        # The rewards left the repository service (decision 0027): its role lost them too.
        (REPOSITORY, REWARD),
        (REWARD, REPOSITORY),
    ],
)
async def test_a_services_role_is_refused_the_others_tables(
    database_url: str, owner: str, other: str
) -> None:
    table = {ORGANIZATION: "organizations", REPOSITORY: "repositories", REWARD: "rewards"}
    engine = create_engine(database_url, owner=owner)
    try:
        async with engine.connect() as conn:
            # Its own tables, unqualified (search_path), are there for it.
            await conn.execute(sa.text(f"SELECT count(*) FROM {table[owner]}"))
            await conn.execute(sa.text("SELECT count(*) FROM outbox_events"))
            await conn.rollback()
            for statement in (
                f"SELECT count(*) FROM {other}.{table[other]}",
                f"DELETE FROM {other}.outbox_events",
                f"CREATE TABLE {owner}.mine (i int)",  # its schema is not its to change
            ):
                with pytest.raises(ProgrammingError, match="permission denied"):
                    await conn.execute(sa.text(statement))
                await conn.rollback()
    finally:
        await engine.dispose()


async def test_the_organization_service_may_rename_its_tables(polar_infra: Infra) -> None:
    """The organization service renames `organizations` in a migration of its own: the
    repository service still files a new installation's repositories (it never reads it)."""
    payload = _installation_created()
    async with temporary_database(polar_infra.database_url) as url:
        admin = create_engine(url)
        engine = create_engine(url, owner=REPOSITORY)
        try:
            async with admin.begin() as conn:
                await conn.execute(
                    sa.text("ALTER TABLE organization.organizations RENAME TO accounts")
                )
            delivery = Delivery(
                message_id=str(uuid.uuid4()),
                subject="github.webhook.installation.created",
                data=json.dumps(payload).encode(),
                headers={},
                num_delivered=1,
                stream_sequence=1,
            )
            async with create_sessionmaker(engine).begin() as session:
                assert await on_webhooks(session, [delivery]) == {}
            async with create_sessionmaker(engine)() as session:
                names = set(await session.scalars(sa.select(Repository.name)))
            assert names == {r["name"] for r in payload["repositories"]}
        finally:
            await engine.dispose()
            await admin.dispose()


def _installation_created() -> dict[str, Any]:
    path = FIXTURES / "installation" / "created.payload.json"
    payload: dict[str, Any] = json.loads(path.read_text())
    assert payload["repositories"], path
    return payload
