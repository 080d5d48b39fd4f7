import asyncio
import os
import sys
import uuid

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from polar_db.engine import create_engine
from polar_db.migrate import CONTEXT_OPTIONS, downgrade, upgrade
from polar_db.models import OWNERS, metadata_of, role_of
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine


async def _tables(url: str) -> set[str]:
    """schema.table of every table outside PostgreSQL's own schemas."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:

            def names(c: Connection) -> set[str]:
                found = inspect(c)
                return {
                    f"{schema}.{table}"
                    for schema in found.get_schema_names()
                    if schema not in ("information_schema", "pg_catalog", "pg_toast")
                    for table in found.get_table_names(schema=schema)
                }

            return await conn.run_sync(names)
    finally:
        await engine.dispose()


def _expected() -> set[str]:
    owned = {t for owner in OWNERS for t in metadata_of(owner).tables}
    return owned | {"public.alembic_version"} | {f"{o}.alembic_version" for o in OWNERS}


async def test_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    assert await _tables(empty_database_url) == _expected()
    downgrade(empty_database_url)
    assert await _tables(empty_database_url) == {"public.alembic_version"}
    upgrade(empty_database_url)
    assert await _tables(empty_database_url) == _expected()


async def test_models_match_migrations(engine: AsyncEngine) -> None:
    """Each service's tables, as its models declare them, are what its migrations made."""

    def diff(conn: Connection, owner: str) -> list[object]:
        opts = {
            **CONTEXT_OPTIONS,
            "include_schemas": True,
            "include_name": lambda name, type_, _: (
                name == owner if type_ == "schema" else name != "alembic_version"
            ),
        }
        context = MigrationContext.configure(conn, opts=opts)
        return list(compare_metadata(context, metadata_of(owner)))

    async with engine.connect() as conn:
        for owner in OWNERS:
            assert await conn.run_sync(diff, owner) == [], owner


async def test_a_service_migrates_alone(empty_database_url: str) -> None:
    """One service's history moves without the other's: the organization service's first
    revision applied and undone while the repository service's stays where it is."""
    upgrade(empty_database_url, service="repository")
    engine = create_engine(empty_database_url)
    try:

        async def versions() -> dict[str, str | None]:
            async with engine.connect() as conn:
                return {
                    owner: await conn.scalar(
                        text(
                            f"SELECT version_num FROM {owner}.alembic_version "
                            f"WHERE to_regclass('{owner}.alembic_version') IS NOT NULL"
                        )
                    )
                    if await conn.scalar(text(f"SELECT to_regclass('{owner}.alembic_version')"))
                    else None
                    for owner in OWNERS
                }

        # The other services' histories (rewards, any later one) stay where they are: nowhere.
        others = dict.fromkeys(OWNERS)
        assert await versions() == others | {"repository": "0002"}
        upgrade(empty_database_url, service="organization")
        assert await versions() == others | {"organization": "0001", "repository": "0002"}
        downgrade(empty_database_url, service="organization")
        assert await versions() == others | {"repository": "0002"}
    finally:
        await engine.dispose()


async def test_known_users_go_and_come_back_empty(empty_database_url: str) -> None:
    """The repository service's 0002 drops its unread copy of users; its downgrade recreates
    the table empty (the users are the organization service's), for its role as before."""
    upgrade(empty_database_url, service="repository")
    engine = create_engine(empty_database_url)
    try:

        async def table() -> object:
            async with engine.connect() as conn:
                return await conn.scalar(text("SELECT to_regclass('repository.known_users')"))

        assert await table() is None
        downgrade(empty_database_url, "0001", service="repository")
        assert await table() is not None
        async with engine.connect() as conn:
            await conn.execute(text(f"SET ROLE {role_of('repository')}"))
            assert await conn.scalar(text("SELECT count(*) FROM repository.known_users")) == 0
        upgrade(empty_database_url, service="repository")
        assert await table() is None
    finally:
        await engine.dispose()


async def test_the_split_keeps_every_row(empty_database_url: str) -> None:
    """A database of the shared history (0006) with data upgrades into the services'
    schemas with every row where its owner expects it."""
    from alembic import command
    from polar_db.migrate import _run, config

    _run(command.upgrade, config(empty_database_url), "0006")
    org, repo, user, issue = (uuid.uuid4() for _ in range(4))
    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as conn:
            for statement in (
                f"INSERT INTO organizations (id, platform, name, external_id, is_personal, "
                f"installation_id, status) VALUES ('{org}', 'github', 'acme', 11, false, 12, "
                f"'active')",
                f"INSERT INTO users (id, username, email_verified, profile) "
                f"VALUES ('{user}', 'ann', false, '{{}}')",
                f"INSERT INTO repositories (id, platform, external_id, organization_id, name, "
                f"topics, is_private) VALUES ('{repo}', 'github', 21, '{org}', 'widget', '[]', "
                f"false)",
                f"INSERT INTO issues (id, platform, external_id, organization_id, repository_id, "
                f"number, title, state, issue_created_at) VALUES ('{issue}', 'github', 31, "
                f"'{org}', '{repo}', 1, 'bug', 'open', now())",
                f"INSERT INTO rewards (id, issue_id, repository_id, organization_id, amount, "
                f"currency, state, backer_user_id) VALUES ('{uuid.uuid4()}', '{issue}', "
                f"'{repo}', '{org}', 500, 'usd', 'created', '{user}')",
                "INSERT INTO outbox_events (id, subject, type, source, payload) VALUES "
                f"('{uuid.uuid4()}', 'polar.organization.v1.created', 't', "
                "'/polar/organization', ''), "
                f"('{uuid.uuid4()}', 'polar.repository.v1.created', 't', '/polar/repository', '')",
                "INSERT INTO processed_messages (consumer, message_id) VALUES "
                "('organization-installations', 'a'), ('repository-webhooks', 'b')",
            ):
                await conn.execute(text(statement))
        upgrade(empty_database_url)
        async with engine.connect() as conn:

            async def rows(query: str) -> list[tuple[object, ...]]:
                return [tuple(r) for r in await conn.execute(text(query))]

            assert await rows("SELECT name, version FROM organization.organizations") == [
                ("acme", 1)
            ]
            assert await rows("SELECT username FROM organization.users") == [("ann",)]
            assert await rows("SELECT name FROM repository.repositories") == [("widget",)]
            assert await rows("SELECT title FROM repository.issues") == [("bug",)]
            # ...and the reward service's history took the rewards on (decision 0027).
            assert await rows("SELECT amount FROM reward.rewards") == [(500,)]
            assert await rows(
                "SELECT id, external_id, name, installation_id, status, version "
                "FROM repository.known_organizations"
            ) == [(org, 11, "acme", 12, "active", 0)]
            # The users' copy the split made is gone (the repository service's 0002).
            assert await conn.scalar(text("SELECT to_regclass('repository.known_users')")) is None
            assert await rows("SELECT source FROM organization.outbox_events") == [
                ("/polar/organization",)
            ]
            assert await rows("SELECT source FROM repository.outbox_events") == [
                ("/polar/repository",)
            ]
            assert await rows("SELECT consumer FROM organization.processed_messages") == [
                ("organization-installations",)
            ]
            assert await rows("SELECT consumer FROM repository.processed_messages") == [
                ("repository-webhooks",)
            ]
    finally:
        await engine.dispose()


async def _cli(url: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "polar_db.migrate",
        *args,
        env={**os.environ, "POLAR_DATABASE_URL": url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_concurrent_cli_upgrades_serialize(empty_database_url: str) -> None:
    results = await asyncio.gather(*(_cli(empty_database_url, "upgrade") for _ in range(3)))
    assert all(code == 0 for code, _ in results), results
    code, out = await _cli(empty_database_url, "current")
    assert code == 0
    assert "(head)" in out


async def test_rewards_move_to_the_reward_service_whole(empty_database_url: str) -> None:
    """The reward service's first revision moves existing rewards, every column of every row,
    out of the repository service's schema, and back on downgrade (decision 0027)."""
    upgrade(empty_database_url, service="repository")
    org, repo, issue = (uuid.uuid4() for _ in range(3))
    rewards = [uuid.uuid4() for _ in range(3)]
    columns = "id, issue_id, repository_id, organization_id, amount, currency, state, email"
    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO repository.repositories (id, platform, external_id, "
                    f"organization_id, name, topics, is_private) VALUES ('{repo}', 'github', 21, "
                    f"'{org}', 'widget', '[]', false)"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO repository.issues (id, platform, external_id, organization_id, "
                    f"repository_id, number, title, state, issue_created_at) VALUES ('{issue}', "
                    f"'github', 31, '{org}', '{repo}', 1, 'bug', 'open', now())"
                )
            )
            for n, id in enumerate(rewards):
                await conn.execute(
                    text(
                        f"INSERT INTO repository.rewards ({columns}) VALUES ('{id}', '{issue}', "
                        f"'{repo}', '{org}', {100 * (n + 1)}, 'USD', "
                        f"'{('created', 'paid', 'cancelled')[n]}', 'b{n}@example.com')"
                    )
                )
        async with engine.connect() as conn:
            before = sorted(
                tuple(r)
                for r in await conn.execute(
                    text(f"SELECT {columns}, created_at FROM repository.rewards")
                )
            )
        upgrade(empty_database_url, service="reward")
        async with engine.connect() as conn:
            after = sorted(
                tuple(r)
                for r in await conn.execute(
                    text(f"SELECT {columns}, created_at FROM reward.rewards")
                )
            )
            gone = await conn.scalar(text("SELECT to_regclass('repository.rewards')"))
        assert after == before
        assert len(after) == 3
        assert gone is None
        downgrade(empty_database_url, service="reward")
        async with engine.connect() as conn:
            back = sorted(
                tuple(r)
                for r in await conn.execute(
                    text(f"SELECT {columns}, created_at FROM repository.rewards")
                )
            )
        assert back == before
    finally:
        await engine.dispose()
