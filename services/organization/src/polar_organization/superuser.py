"""`python -m polar_organization.superuser USER [--revoke]`: make a user a superuser.

USER is a user id or a username (the GitHub login). A superuser may use the v1 user-admin
routes (GET/PATCH/DELETE /api/v1/users/{id}); nothing in the API grants it. The change and
its `user_updated` event commit together, like any other write of the service.
"""

from __future__ import annotations

import argparse
import asyncio

from polar_db.engine import create_engine, create_sessionmaker
from polar_db.models.organization import SCHEMA
from polar_kit.errors import DomainError

from . import service
from .settings import OrganizationSettings


async def run(key: str, value: bool, settings: OrganizationSettings) -> int:
    engine = create_engine(settings.database_url, owner=SCHEMA, role=settings.database_role)
    try:
        async with create_sessionmaker(engine).begin() as session:
            user = await service.set_superuser(session, key, value)
            print(f"{user.id} {user.username} is_superuser={user.is_superuser}")
    except DomainError as e:
        print(f"error: {e}")
        return 1
    finally:
        await engine.dispose()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m polar_organization.superuser")
    parser.add_argument("user", help="user id or username")
    parser.add_argument("--revoke", action="store_true", help="take the right away instead")
    args = parser.parse_args(argv)
    return asyncio.run(run(args.user, not args.revoke, OrganizationSettings()))


if __name__ == "__main__":
    raise SystemExit(main())
