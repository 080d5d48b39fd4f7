"""Batch upsert of repositories and issues (polar_db.upsert.upsert_many, as the repository
service writes them) in rows/s, beside the floor measured in the same run: a plain asyncpg
COPY (`copy_records_to_table`) of the same rows into a scratch table of the same shape:
`CREATE TABLE ... (LIKE issues INCLUDING ALL)` (same columns, defaults, indexes and CHECKs)
plus the real table's foreign keys, which LIKE leaves out and COPY checks too.

Both sides start from the same Python dicts and end committed: the upsert builds one
`INSERT ... ON CONFLICT DO UPDATE ... RETURNING` per batch (and ORM objects from RETURNING,
which the service needs for events and responses); COPY converts the dicts to tuples (JSON
as text) and streams them. Runs:

- insert: every row new;
- update: the same rows again, one column changed (ON CONFLICT DO UPDATE on every row);
- insert + events: the insert plus one outbox event per row in the same transaction, as
  BatchUpsertRepositories and the webhook/sync ingest do (repositories only: issues' events
  are recorded the same way).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from polar_db.engine import asyncpg_dsn, create_engine, create_sessionmaker, server_settings
from polar_db.models import Issue, IssueState, Organization, OrganizationStatus, Platform
from polar_db.models import Repository as RepositoryModel
from polar_db.upsert import upsert_many
from polar_dev.infra import infra
from polar_repository import events
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.common import CPUS, bench_database, table, write_results

TARGET_RATIO = 0.30
Row = dict[str, Any]
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class UpsertConfig:
    repositories: int = 1_000
    issues: int = 50_000
    issue_repositories: int = 10  # the issues are spread over this many repositories
    batch: int = 1_000  # rows per statement (and per transaction)
    rounds: int = 3  # each measurement is the best of this many (fresh keys each round)
    # 1,000 repositories is one statement (~0.1 s): more rounds to see through the noise.
    repository_rounds: int = 10


# --- rows ------------------------------------------------------------------------------------


def repository_rows(organization_id: uuid.UUID, count: int, base: int) -> list[Row]:
    return [
        {
            "id": uuid.uuid4(),
            "platform": Platform.github,
            "external_id": base + i,
            "organization_id": organization_id,
            "name": f"repo-{base + i}",
            "description": "A repository mirrored from GitHub, with a one-line description.",
            "is_private": False,
            "is_fork": False,
            "is_archived": False,
            "stars": i % 500,
            "forks": i % 50,
            "watchers": i % 70,
            "open_issues": i % 30,
            "main_branch": "main",
            "topics": ["python", "grpc", "funding"],
            "license": "MIT",
            "homepage": f"https://example.com/{base + i}",
            "repository_created_at": EPOCH,
            "repository_modified_at": EPOCH + timedelta(seconds=i),
            "repository_pushed_at": EPOCH + timedelta(seconds=i),
            "deleted_at": None,
        }
        for i in range(count)
    ]


def issue_rows(
    organization_id: uuid.UUID, repository_ids: Sequence[uuid.UUID], count: int, base: int
) -> list[Row]:
    per_repo = -(-count // len(repository_ids))
    author = {
        "id": 583231,
        "login": "octocat",
        "avatar_url": "https://avatars.githubusercontent.com/u/583231?v=4",
        "type": "User",
    }
    return [
        {
            "id": uuid.uuid4(),
            "platform": Platform.github,
            "external_id": base + i,
            "organization_id": organization_id,
            "repository_id": repository_ids[i // per_repo],
            "number": i % per_repo + 1,
            "title": f"Something breaks when doing thing number {i}",
            "body": "Steps to reproduce:\n1. do this\n2. do that\n\nExpected: it works. " * 3,
            "comments": i % 7,
            "author": author,
            "author_association": "CONTRIBUTOR",
            "labels": [{"id": 1, "name": "bug", "color": "d73a4a"}],
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "closed_by": None,
            "reactions": {"total_count": i % 3, "+1": i % 3},
            "state": IssueState.open if i % 4 else IssueState.closed,
            "state_reason": None if i % 4 else "completed",
            "issue_closed_at": None if i % 4 else EPOCH + timedelta(days=1),
            "issue_modified_at": EPOCH + timedelta(seconds=i),
            "issue_created_at": EPOCH,
            "deleted_at": None,
        }
        for i in range(count)
    ]


# --- the two writers -------------------------------------------------------------------------


def _batches(rows: Sequence[Row], size: int) -> list[Sequence[Row]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


async def upsert(
    sessionmaker: async_sessionmaker[AsyncSession],
    model: Any,
    rows: Sequence[Row],
    batch: int,
    *,
    record: Callable[[AsyncSession, Any], Awaitable[None]] | None = None,
) -> float:
    """Seconds to upsert `rows` by external_id, `batch` rows per statement and transaction."""
    gc.collect()  # garbage of the previous run is not this run's cost
    started = time.perf_counter()
    for chunk in _batches(rows, batch):
        async with sessionmaker.begin() as session:
            written = await upsert_many(session, model, chunk, conflict=["external_id"])
            assert len(written) == len(chunk)
            if record is not None:
                await record(session, written)
    return time.perf_counter() - started


def _copy_value(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value)  # asyncpg's COPY takes json/jsonb as text
    if isinstance(value, Platform | IssueState):
        return value.value
    return value


async def copy(conn: asyncpg.Connection, table_name: str, rows: Sequence[Row], batch: int) -> float:
    """Seconds to COPY `rows` into `table_name`, `batch` rows per COPY and transaction."""
    columns = list(rows[0])
    gc.collect()
    started = time.perf_counter()
    for chunk in _batches(rows, batch):
        records = [tuple(_copy_value(row[c]) for c in columns) for row in chunk]
        async with conn.transaction():
            await conn.copy_records_to_table(table_name, records=records, columns=columns)
    return time.perf_counter() - started


# --- the runs --------------------------------------------------------------------------------


@dataclass
class Measure:
    name: str
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


async def _seed(
    sessionmaker: async_sessionmaker[AsyncSession], config: UpsertConfig
) -> tuple[uuid.UUID, list[list[uuid.UUID]]]:
    """An organization, and repositories for the issues: a set per round, since issue
    numbers are unique per repository and every round writes new issues."""
    org_id = uuid.uuid4()
    async with sessionmaker.begin() as session:
        await session.execute(
            insert(Organization).values(
                id=org_id,
                platform=Platform.github,
                name="bench-org",
                external_id=1,
                is_personal=False,
                status=OrganizationStatus.active,
            )
        )
        count = config.issue_repositories * config.rounds
        repos = repository_rows(org_id, count, base=900_000_000)
        await session.execute(insert(RepositoryModel), repos)
    ids = [r["id"] for r in repos]
    n = config.issue_repositories
    return org_id, [ids[i : i + n] for i in range(0, len(ids), n)]


def _changed(rows: Sequence[Row], column: str, value: Callable[[Row], Any]) -> list[Row]:
    return [{**row, column: value(row)} for row in rows]


async def measure_table(
    url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    label: str,
    model: Any,
    make_rows: Callable[[int], list[Row]],
    count: int,
    config: UpsertConfig,
    record: Callable[[AsyncSession, Any], Awaitable[None]] | None,
) -> list[Measure]:
    table_name = model.__tablename__
    scratch = f"bench_copy_{table_name}"
    conn = await asyncpg.connect(
        asyncpg_dsn(url), server_settings=server_settings("repository", role="")
    )
    try:
        await conn.execute(f"CREATE TABLE {scratch} (LIKE {table_name} INCLUDING ALL)")
        for fk in model.__table__.foreign_key_constraints:
            columns = ", ".join(c.name for c in fk.columns)
            target = ", ".join(e.column.name for e in fk.elements)
            await conn.execute(
                f"ALTER TABLE {scratch} ADD FOREIGN KEY ({columns}) "
                f"REFERENCES {fk.referred_table.name} ({target}) ON DELETE CASCADE"
            )
        best: dict[str, float] = {}

        def keep(name: str, seconds: float) -> None:
            best[name] = min(best.get(name, seconds), seconds)

        for round_ in range(config.rounds):
            rows = make_rows(round_)
            # Alternate who goes first, so neither always gets the warmer cache.
            if round_ % 2:
                keep("copy", await copy(conn, scratch, rows, config.batch))
                keep("insert", await upsert(sessionmaker, model, rows, config.batch))
            else:
                keep("insert", await upsert(sessionmaker, model, rows, config.batch))
                keep("copy", await copy(conn, scratch, rows, config.batch))
            changed = _changed(rows, "title" if model is Issue else "stars", _bump)
            keep("update", await upsert(sessionmaker, model, changed, config.batch))
            if record is not None:
                fresh = make_rows(100 + round_)
                keep(
                    "insert + events",
                    await upsert(sessionmaker, model, fresh, config.batch, record=record),
                )
    finally:
        await conn.close()
    names = {
        "copy": f"{label}: asyncpg COPY (floor)",
        "insert": f"{label}: upsert_many, all new",
        "update": f"{label}: upsert_many, all existing (1 column changed)",
        "insert + events": f"{label}: upsert_many, all new, + 1 outbox event/row",
    }
    return [Measure(names[k], count, v) for k, v in best.items()]


def _bump(row: Row) -> Any:
    return row["title"] + " (edited)" if "title" in row else (row["stars"] or 0) + 1


async def run(server_url: str, config: UpsertConfig) -> dict[str, Any]:
    async with bench_database(server_url) as url:
        engine = create_engine(url, owner="repository", role="")  # its outbox, all rights
        sessionmaker = create_sessionmaker(engine)
        try:
            org_id, repo_ids = await _seed(sessionmaker, config)
            repository_config = replace(config, rounds=config.repository_rounds)
            repos = await measure_table(
                url,
                sessionmaker,
                label=f"{config.repositories:,} repositories",
                model=RepositoryModel,
                make_rows=lambda r: repository_rows(
                    org_id, config.repositories, base=1_000_000 * (r + 1)
                ),
                count=config.repositories,
                config=repository_config,
                record=events.repositories_upserted,
            )
            issues = await measure_table(
                url,
                sessionmaker,
                label=f"{config.issues:,} issues",
                model=Issue,
                make_rows=lambda r: issue_rows(
                    org_id, repo_ids[r], config.issues, base=100_000_000 * (r + 1)
                ),
                count=config.issues,
                config=config,
                record=None,
            )
        finally:
            await engine.dispose()

    results = [*repos, *issues]
    floors = {m.name.split(":")[0]: m.rows_per_second for m in results if "COPY" in m.name}
    ratios = {
        m.name: round(m.rows_per_second / floors[m.name.split(":")[0]], 3)
        for m in results
        if "COPY" not in m.name
    }
    print(
        f"\n== Batch upsert vs COPY: {config.batch:,} rows per statement and transaction, "
        f"best of {config.repository_rounds} (repositories) and {config.rounds} (issues)"
    )
    print(
        table(
            ["run", "rows", "seconds", "rows/s", "vs COPY"],
            [
                [
                    m.name,
                    m.rows,
                    round(m.seconds, 3),
                    m.rows_per_second,
                    f"{ratios[m.name]:.0%}" if m.name in ratios else "(floor)",
                ]
                for m in results
            ],
        )
    )
    main_runs = [n for n in ratios if "all new" in n and "outbox" not in n]
    met = all(ratios[n] >= TARGET_RATIO for n in main_runs)
    print(
        f"   target: upsert >= {TARGET_RATIO:.0%} of COPY -> {'met' if met else 'NOT met'}. "
        f"COPY goes into a table LIKE the real one (same indexes and foreign keys).\n"
        f"   {CPUS} CPUs shared by this process and PostgreSQL."
    )
    out = {
        "config": asdict(config),
        "runs": [
            {
                "name": m.name,
                "rows": m.rows,
                "seconds": round(m.seconds, 4),
                "rows_per_second": round(m.rows_per_second, 1),
            }
            for m in results
        ],
        "ratio_vs_copy": ratios,
        "target_ratio": TARGET_RATIO,
    }
    print(f"   results: {write_results('repository_upsert', out)}")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.repository_upsert", description=__doc__)
    parser.add_argument("--issues", type=int, default=50_000)
    parser.add_argument("--repositories", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = UpsertConfig(
        repositories=args.repositories, issues=args.issues, batch=args.batch, rounds=args.rounds
    )
    with infra(ephemeral=True) as servers:
        asyncio.run(run(servers.database_url, config))


if __name__ == "__main__":
    main()
