"""Run Alembic migrations programmatically, or from the command line:

    python -m polar_db.migrate upgrade [--service NAME] [REVISION]     (default head)
    python -m polar_db.migrate downgrade [--service NAME] [REVISION]   (default base)
    python -m polar_db.migrate revision --service NAME -m MSG [--autogenerate]
    python -m polar_db.migrate current [--service NAME]

Histories (decision 0021): the shared one (migrations/versions, 0001-0007, frozen: its last
revision split the tables into their owners' schemas), then one per service
(migrations/<service>/, version table `<service>.alembic_version`), so a service's schema
change ships with that service alone. `upgrade` brings the shared history to head, then
every service's (or, with --service, that one's) and grants each service's role its schema;
`downgrade` goes the other way. The database URL comes from POLAR_DATABASE_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from polar_db.devenv import announce, load_dev_env
from polar_db.engine import asyncpg_dsn
from polar_db.models.base import OWNERS

# Shared by env.py and the models/migrations agreement test.
CONTEXT_OPTIONS: dict[str, Any] = {"compare_type": True, "compare_server_default": True}
# Arbitrary constant key for pg_advisory_xact_lock while migrating.
MIGRATION_LOCK_ID = 0x706F6C6172  # "polar"


def config(url: str | None = None, owner: str | None = None) -> Config:
    """The Alembic configuration of the shared history (`owner` None) or of a service's."""
    cfg = Config()
    cfg.set_main_option("script_location", "polar_db:migrations")
    if owner is not None:
        if owner not in OWNERS:
            raise ValueError(f"no service {owner!r} owns tables; one of {', '.join(OWNERS)}")
        cfg.set_main_option("version_locations", str(_versions_dir(owner)))
    cfg.attributes["owner"] = owner
    cfg.set_main_option("path_separator", "os")
    # Revisions are numbered 0001, 0002, ... (see revision()); files are 0002_slug.py.
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if ruff := shutil.which("ruff"):
        # Generated revisions come out lint-clean and formatted.
        cfg.set_section_option("post_write_hooks", "hooks", "ruff_format, ruff_fix")
        cfg.set_section_option("post_write_hooks", "ruff_fix.type", "exec")
        cfg.set_section_option("post_write_hooks", "ruff_fix.executable", ruff)
        cfg.set_section_option(
            "post_write_hooks", "ruff_fix.options", "check --fix REVISION_SCRIPT_FILENAME"
        )
        cfg.set_section_option("post_write_hooks", "ruff_format.type", "exec")
        cfg.set_section_option("post_write_hooks", "ruff_format.executable", ruff)
        cfg.set_section_option(
            "post_write_hooks", "ruff_format.options", "format REVISION_SCRIPT_FILENAME"
        )
    cfg.attributes["url"] = url
    return cfg


def _run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run an Alembic command. env.py uses asyncio.run(), which cannot nest inside a
    running event loop: when called from async code, run it in a worker thread (blocking
    the caller until done, which is what a startup or fixture wants)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(*args, **kwargs)
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(fn, *args, **kwargs).result()


def upgrade(url: str, revision: str = "head", *, service: str | None = None) -> None:
    """The shared history to head, then every service's history (or `service`'s only) to
    `revision` (a service's revision names only make sense with `service`)."""
    _run(command.upgrade, config(url), "head")
    for owner in OWNERS if service is None else (service,):
        _run(command.upgrade, config(url, owner), revision)


def downgrade(url: str, revision: str = "base", *, service: str | None = None) -> None:
    """`service`'s history down to `revision`; without `service`, every service's history
    and then the shared one (to `revision`) — `base` empties the database."""
    if service is not None:
        _run(command.downgrade, config(url, service), revision)
        return
    for owner in reversed(OWNERS):
        _run(command.downgrade, config(url, owner), "base")
    _run(command.downgrade, config(url), revision)
    if revision == "base":
        # What is left of each service's schema (its version table) goes too: the schemas
        # of services added after the split are not the shared history's to drop.
        _run(asyncio.run, _drop_schemas(url, OWNERS))


async def _drop_schemas(url: str, owners: Sequence[str]) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        for owner in owners:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{owner}" CASCADE')
    finally:
        await connection.close()


def current(url: str, *, service: str | None = None) -> None:
    for owner in (None, *OWNERS) if service is None else (service,):
        print(f"{owner or 'shared'}:", flush=True)
        _run(command.current, config(url, owner), verbose=True)


def next_revision_id(owner: str | None = None) -> str:
    numbers = [
        int(script.revision)
        for script in ScriptDirectory.from_config(config(None, owner)).walk_revisions()
        if script.revision.isdigit()
    ]
    return f"{max(numbers, default=0) + 1:04d}"


def revision(url: str | None, message: str, *, service: str, autogenerate: bool = False) -> None:
    """A new revision in `service`'s history (the shared one is closed)."""
    _run(
        command.revision,
        config(url, service),
        message=message,
        autogenerate=autogenerate,
        rev_id=next_revision_id(service),
        version_path=str(_versions_dir(service)),
    )


def _versions_dir(owner: str) -> Path:
    return Path(__file__).parent / "migrations" / owner


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m polar_db.migrate")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upgrade")
    up.add_argument("revision", nargs="?", default="head")
    down = sub.add_parser("downgrade")
    down.add_argument("revision", nargs="?", default="base")
    cur = sub.add_parser("current")
    rev = sub.add_parser("revision")
    for p in (up, down, cur):
        p.add_argument("--service", choices=OWNERS, help="this service's history only")
    rev.add_argument("--service", choices=OWNERS, required=True)
    rev.add_argument("-m", "--message", required=True)
    rev.add_argument("--autogenerate", action="store_true")
    args = parser.parse_args(argv)
    # Alembic reports what it does (and what autogenerate found) through logging.
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    dev_env = load_dev_env()
    url = os.environ.get("POLAR_DATABASE_URL")
    if not url and (args.command != "revision" or args.autogenerate):
        sys.exit("POLAR_DATABASE_URL is not set (and there is no .dev/env from `make dev`)")
    if url:
        announce("database", url, "POLAR_DATABASE_URL", dev_env)
    if args.command == "upgrade":
        upgrade(url or "", args.revision, service=args.service)
    elif args.command == "downgrade":
        downgrade(url or "", args.revision, service=args.service)
    elif args.command == "current":
        current(url or "", service=args.service)
    else:
        revision(url, args.message, service=args.service, autogenerate=args.autogenerate)


if __name__ == "__main__":
    main()
