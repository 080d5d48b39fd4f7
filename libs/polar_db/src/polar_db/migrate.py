"""Run Alembic migrations programmatically, or from the command line:

    python -m polar_db.migrate upgrade [REVISION]       (default head)
    python -m polar_db.migrate downgrade [REVISION]     (default base)
    python -m polar_db.migrate revision -m MSG [--autogenerate]
    python -m polar_db.migrate current

The database URL comes from POLAR_DATABASE_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from polar_db.devenv import announce, load_dev_env

# Shared by env.py and the models/migrations agreement test.
CONTEXT_OPTIONS: dict[str, Any] = {"compare_type": True, "compare_server_default": True}
# Arbitrary constant key for pg_advisory_xact_lock while migrating.
MIGRATION_LOCK_ID = 0x706F6C6172  # "polar"


def config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "polar_db:migrations")
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


def upgrade(url: str, revision: str = "head") -> None:
    _run(command.upgrade, config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    _run(command.downgrade, config(url), revision)


def current(url: str) -> None:
    _run(command.current, config(url), verbose=True)


def next_revision_id() -> str:
    numbers = [
        int(script.revision)
        for script in ScriptDirectory.from_config(config()).walk_revisions()
        if script.revision.isdigit()
    ]
    return f"{max(numbers, default=0) + 1:04d}"


def revision(url: str | None, message: str, *, autogenerate: bool = False) -> None:
    _run(
        command.revision,
        config(url),
        message=message,
        autogenerate=autogenerate,
        rev_id=next_revision_id(),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m polar_db.migrate")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("upgrade").add_argument("revision", nargs="?", default="head")
    sub.add_parser("downgrade").add_argument("revision", nargs="?", default="base")
    sub.add_parser("current")
    rev = sub.add_parser("revision")
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
        upgrade(url or "", args.revision)
    elif args.command == "downgrade":
        downgrade(url or "", args.revision)
    elif args.command == "current":
        current(url or "")
    else:
        revision(url, args.message, autogenerate=args.autogenerate)


if __name__ == "__main__":
    main()
