from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from polar_db.engine import create_sessionmaker
from polar_db.models import Base, Issue, Organization, Repository, Reward
from polar_db.testing import external_id, issue_row, organization_row, repository_row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with create_sessionmaker(engine)() as session:
        yield session
        await session.rollback()


async def _add(session: AsyncSession, *objects: Base) -> None:
    session.add_all(objects)
    await session.flush()


async def _violates(session: AsyncSession, constraint: str, obj: Base) -> None:
    with pytest.raises(IntegrityError, match=constraint):
        await _add(session, obj)


@pytest.fixture
async def org(session: AsyncSession) -> Organization:
    org = Organization(**organization_row())
    await _add(session, org)
    return org


@pytest.fixture
async def repo(session: AsyncSession, org: Organization) -> Repository:
    repo = Repository(**repository_row(org.id))
    await _add(session, repo)
    return repo


@pytest.mark.parametrize(
    ("column", "constraint"),
    [
        ("name", "uq_organizations_name"),
        ("external_id", "uq_organizations_external_id"),
        ("installation_id", "uq_organizations_installation_id"),
    ],
)
async def test_organization_unique(
    session: AsyncSession, org: Organization, column: str, constraint: str
) -> None:
    duplicate = organization_row(**{column: getattr(org, column)})
    await _violates(session, constraint, Organization(**duplicate))


async def test_organizations_without_installation_coexist(session: AsyncSession) -> None:
    await _add(
        session,
        Organization(**organization_row(installation_id=None)),
        Organization(**organization_row(installation_id=None)),
    )


async def test_repository_name_unique_per_organization(
    session: AsyncSession, org: Organization, repo: Repository
) -> None:
    other_org = Organization(**organization_row())
    await _add(session, other_org)
    await _add(session, Repository(**repository_row(other_org.id, name=repo.name)))
    await _violates(
        session,
        "ix_repositories_live_organization_id_name",
        Repository(**repository_row(org.id, name=repo.name)),
    )


async def test_repository_tombstone_frees_its_name(
    session: AsyncSession, org: Organization, repo: Repository
) -> None:
    repo.deleted_at = datetime.now(UTC)
    await _add(session, repo, Repository(**repository_row(org.id, name=repo.name)))


async def test_issue_number_unique_per_repository(
    session: AsyncSession, org: Organization, repo: Repository
) -> None:
    await _add(session, Issue(**issue_row(org.id, repo.id, 1)))
    await _violates(
        session,
        "uq_issues_organization_id_repository_id_number",
        Issue(**issue_row(org.id, repo.id, 1)),
    )


@pytest.mark.parametrize(("amount", "ok"), [(1, True), (0, False), (-100, False)])
async def test_reward_amount_positive(
    session: AsyncSession, org: Organization, repo: Repository, amount: int, ok: bool
) -> None:
    issue = Issue(**issue_row(org.id, repo.id, 7, external_id=external_id()))
    await _add(session, issue)
    fields: dict[str, Any] = {
        "issue_id": issue.id,
        "repository_id": repo.id,
        "organization_id": org.id,
        "amount": amount,
        "currency": "usd",
    }
    if ok:
        await _add(session, Reward(**fields))
    else:
        await _violates(session, "ck_rewards_amount_positive", Reward(**fields))
