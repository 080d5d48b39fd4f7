import pytest
from polar_db.engine import asyncpg_dsn, create_engine, create_sessionmaker, sqlalchemy_url
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:p@h:5433/db",
        "postgresql://u:p@h:5433/db",
        "postgresql+asyncpg://u:p@h:5433/db",
    ],
)
def test_url_forms(url: str) -> None:
    assert sqlalchemy_url(url).render_as_string(False) == "postgresql+asyncpg://u:p@h:5433/db"
    assert asyncpg_dsn(url) == "postgresql://u:p@h:5433/db"


def test_sslmode_becomes_ssl() -> None:
    assert sqlalchemy_url("postgresql://h/db?sslmode=require").query == {"ssl": "require"}


def test_rejects_other_databases() -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        create_engine("sqlite:///x.db")


async def test_session_roundtrip(engine: AsyncEngine) -> None:
    async with create_sessionmaker(engine)() as session:
        assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
