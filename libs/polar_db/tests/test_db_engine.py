import pytest
from polar_db.engine import asyncpg_dsn, create_engine, create_sessionmaker, sqlalchemy_url
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
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


async def test_errors_do_not_carry_parameters(engine: AsyncEngine) -> None:
    """A failed statement's error (which ends up in logs) names no parameter values: they
    can be tokens (issue 10, finding 2)."""
    async with create_sessionmaker(engine)() as session:
        await session.execute(text("CREATE TEMPORARY TABLE t (token text UNIQUE)"))
        insert = text("INSERT INTO t VALUES (:token)")
        await session.execute(insert, {"token": "gho_unique_secret"})
        with pytest.raises(IntegrityError) as caught:
            await session.execute(insert, {"token": "gho_unique_secret"})
    assert "duplicate key" in str(caught.value)
    assert "gho_unique_secret" not in str(caught.value)
