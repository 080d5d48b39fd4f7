"""`python -m polar_gateway.token USER_ID [--ttl SECONDS]`: a session token for local use.

Signed with POLAR_SESSION_SECRET like a sign-in would; send it as `Authorization: Bearer
<token>`. For development and operations only: whoever holds the secret can mint tokens.
Find a user id with GET /api/v2/users/me after signing in once, or in the users table.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Sequence

from polar_db.devenv import load_dev_env

from .sessions import TokenSigner
from .settings import GatewaySettings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m polar_gateway.token", description=__doc__)
    parser.add_argument("user_id", help="the user's id (a UUID)")
    parser.add_argument("--ttl", type=int, default=24 * 3600, help="lifetime in seconds")
    args = parser.parse_args(argv)
    try:
        user_id = str(uuid.UUID(args.user_id))
    except ValueError:
        print(f"not a user id (UUID): {args.user_id!r}", file=sys.stderr)
        return 2
    load_dev_env()  # the secret of the cluster `make dev` runs here, unless set
    token, _ = TokenSigner(GatewaySettings()).issue_session(user_id, ttl=args.ttl)
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
