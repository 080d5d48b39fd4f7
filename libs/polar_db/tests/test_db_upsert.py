from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from polar_db.engine import create_sessionmaker
from polar_db.models import Organization
from polar_db.testing import organization_row
from polar_db.upsert import excluded, upsert_many
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with create_sessionmaker(engine)() as session:
        yield session
        await session.rollback()


async def test_empty_input(session: AsyncSession) -> None:
    assert await upsert_many(session, Organization, [], conflict=["external_id"]) == []


async def test_created_then_updated(session: AsyncSession) -> None:
    first, second = organization_row(), organization_row()
    inserted = await upsert_many(session, Organization, [first, second], conflict=["external_id"])
    assert sorted(u.row.name for u in inserted) == sorted([first["name"], second["name"]])
    assert all(u.created for u in inserted)
    assert all(u.row.created_at is not None and u.row.modified_at is None for u in inserted)
    ids = {u.row.external_id: u.row.id for u in inserted}

    third = organization_row()
    changed = {**first, "avatar_url": "https://avatars.example/new"}
    result = await upsert_many(
        session, Organization, [changed, second, third], conflict=["external_id"]
    )
    by_external_id = {u.row.external_id: u for u in result}
    assert len(result) == 3

    updated = by_external_id[first["external_id"]]
    assert not updated.created
    assert updated.row.id == ids[first["external_id"]]  # the primary key is never overwritten
    assert updated.row.avatar_url == "https://avatars.example/new"
    assert updated.row.modified_at is not None

    unchanged = by_external_id[second["external_id"]]
    assert not unchanged.created
    assert unchanged.row.modified_at is None  # nothing changed, so modified_at is untouched

    assert by_external_id[third["external_id"]].created


async def test_update_subset_of_columns(session: AsyncSession) -> None:
    row = organization_row()
    await upsert_many(session, Organization, [row], conflict=["external_id"])
    again = {**row, "avatar_url": "https://x/changed", "is_personal": True}
    [result] = await upsert_many(
        session, Organization, [again], conflict=["external_id"], update=["is_personal"]
    )
    assert result.row.is_personal is True
    assert result.row.avatar_url == row["avatar_url"]


async def test_objects_in_session_are_refreshed(session: AsyncSession) -> None:
    row = organization_row()
    [inserted] = await upsert_many(session, Organization, [row], conflict=["external_id"])
    loaded = await session.get(Organization, inserted.row.id)
    assert loaded is not None
    await upsert_many(
        session, Organization, [{**row, "avatar_url": "https://x/2"}], conflict=["name"]
    )
    assert loaded.avatar_url == "https://x/2"


async def test_where_skips_stale_rows(session: AsyncSession) -> None:
    row = organization_row(installation_updated_at=datetime(2024, 6, 1, tzinfo=UTC))
    await upsert_many(session, Organization, [row], conflict=["external_id"])
    fresher = excluded(Organization).installation_updated_at > Organization.installation_updated_at

    stale = {
        **row,
        "avatar_url": "https://x/stale",
        "installation_updated_at": datetime(2024, 1, 1, tzinfo=UTC),
    }
    result = await upsert_many(
        session, Organization, [stale], conflict=["external_id"], where=fresher
    )
    assert result == []
    current = await session.scalar(select(Organization).where(Organization.name == row["name"]))
    assert current is not None
    assert current.avatar_url == row["avatar_url"]

    newer = {
        **row,
        "avatar_url": "https://x/new",
        "installation_updated_at": datetime(2024, 9, 1, tzinfo=UTC),
    }
    [result_row] = await upsert_many(
        session, Organization, [newer], conflict=["external_id"], where=fresher
    )
    assert not result_row.created
    assert result_row.row.avatar_url == "https://x/new"


async def test_duplicate_keys_in_input_last_wins(session: AsyncSession) -> None:
    row = organization_row()
    rows = [row, {**row, "avatar_url": "https://x/last"}]
    [result] = await upsert_many(session, Organization, rows, conflict=["external_id"])
    assert result.created
    assert result.row.avatar_url == "https://x/last"


async def test_rows_must_have_same_keys(session: AsyncSession) -> None:
    rows = [organization_row(), {k: v for k, v in organization_row().items() if k != "avatar_url"}]
    with pytest.raises(ValueError, match="same keys"):
        await upsert_many(session, Organization, rows, conflict=["external_id"])


async def test_rows_must_carry_conflict_columns(session: AsyncSession) -> None:
    with pytest.raises(ValueError, match="conflict columns"):
        await upsert_many(session, Organization, [organization_row()], conflict=["id"])
