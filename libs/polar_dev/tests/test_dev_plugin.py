"""The plugin's per-run database and NATS prefix."""

from pathlib import Path

from nats.js import JetStreamContext
from polar_dev.pytest_plugin import all_streams, delete_streams
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


async def test_database_is_fresh_and_migrated(
    database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    assert "/polar_test_" in database_url
    async with sessionmaker() as session:
        name = await session.scalar(text("SELECT current_database()"))
        tables = set(
            (
                await session.scalars(text("SELECT schemaname || '.' || tablename FROM pg_tables"))
            ).all()
        )
    assert name == database_url.rsplit("/", 1)[1]
    assert {
        "organization.organizations",
        "repository.repositories",
        "repository.alembic_version",
        "public.alembic_version",
    } <= tables


async def test_streams_of_the_prefix_are_deleted(
    js: JetStreamContext, nats_url: str, nats_prefix: str
) -> None:
    assert nats_prefix.startswith("t")
    assert nats_prefix.endswith(".")
    name = nats_prefix.rstrip(".").upper() + "_PROBE"
    await js.add_stream(name=name, subjects=[f"{nats_prefix}probe.>"])
    await js.add_stream(name="OTHER_" + name, subjects=[f"{nats_prefix}other.>"])

    assert sorted(await delete_streams(nats_url, nats_prefix)) == sorted([name, "OTHER_" + name])
    assert [s.config.name for s in await all_streams(js) if s.config.name == name] == []


def test_settings_env(
    settings_env: dict[str, str], nats_prefix: str, github_fixtures: Path
) -> None:
    assert settings_env["POLAR_NATS_PREFIX"] == nats_prefix
    assert settings_env["POLAR_GITHUB_API_URL"].startswith("http://127.0.0.1:")
    assert set(settings_env) == {
        "POLAR_DATABASE_URL",
        "POLAR_NATS_URL",
        "POLAR_NATS_PREFIX",
        "POLAR_GITHUB_API_URL",
        "POLAR_DEV_MODE",
    }
    assert settings_env["POLAR_DEV_MODE"] == "true"
    assert (github_fixtures / "rest" / "pulls" / "get.json").is_file()
