"""GitHub OAuth tokens encrypted at rest (Fernet: AES-128-CBC + HMAC-SHA256, authenticated).

`POLAR_TOKEN_ENCRYPTION_KEYS` lists keys, newest first: the first encrypts, every one
decrypts. To rotate: put a new key first, keep the old ones after it, deploy, run
`python -m polar_organization.tokens reencrypt` (rewrites every stored token with the first
key), then drop the old keys. The same command encrypts tokens stored in plain text before
encryption existed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from polar_kit.secrets import InsecureSecretError, check_secret
from sqlalchemy.ext.asyncio import AsyncSession

from .settings import OrganizationSettings

# Public (it is in this file and in polar_kit.secrets.PUBLISHED_SECRETS): POLAR_DEV_MODE only.
DEV_TOKEN_KEY = "ZGV2LW9ubHktdG9rZW4ta2V5LW5vdC1hLXNlY3JldCE="
# Every Fernet token starts with these bytes (version 0x80, then a timestamp), base64'd.
_FERNET_PREFIX = "gAAAAA"


class TokenCipher:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one key")
        self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])

    @classmethod
    def from_settings(cls, settings: OrganizationSettings) -> TokenCipher:
        """Fails closed: outside development mode every key must be a real, unpublished one."""
        raw = settings.token_encryption_keys.get_secret_value()
        keys = [k.strip() for k in raw.split(",") if k.strip()]
        for key in keys or [""]:
            check_secret("POLAR_TOKEN_ENCRYPTION_KEYS", key, dev_mode=settings.dev_mode)
        try:
            return cls(keys or [DEV_TOKEN_KEY])
        except ValueError:
            raise InsecureSecretError(
                "POLAR_TOKEN_ENCRYPTION_KEYS must be Fernet keys (32 url-safe base64 bytes: "
                'python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())")'
            ) from None

    def encrypt(self, token: str) -> str:
        return self._fernet.encrypt(token.encode()).decode()

    def decrypt(self, stored: str) -> str | None:
        """The token, or None when no key opens it (a removed key, or plain text from before
        encryption): the user signs in with GitHub again."""
        try:
            return self._fernet.decrypt(stored.encode()).decode()
        except InvalidToken:
            return None

    def reencrypt(self, stored: str) -> str | None:
        """`stored` under the first key; plain text is encrypted; None when unreadable."""
        if not stored.startswith(_FERNET_PREFIX):
            return self.encrypt(stored)
        try:
            return self._fernet.rotate(stored.encode()).decode()
        except InvalidToken:
            return None


async def reencrypt_all(session: AsyncSession, cipher: TokenCipher) -> tuple[int, int]:
    """Rewrite every stored token with the first key; returns (rewritten, unreadable)."""
    from . import repository as repo

    rewritten = unreadable = 0
    for account in await repo.all_oauth_accounts(session):
        access = cipher.reencrypt(account.access_token)
        refresh = cipher.reencrypt(account.refresh_token) if account.refresh_token else None
        if access is None or (account.refresh_token and refresh is None):
            unreadable += 1
            continue
        account.access_token, account.refresh_token = access, refresh
        rewritten += 1
    await session.flush()
    return rewritten, unreadable


async def _reencrypt(settings: OrganizationSettings) -> int:
    from polar_db.engine import create_engine, create_sessionmaker
    from polar_db.models.organization import SCHEMA

    cipher = TokenCipher.from_settings(settings)
    engine = create_engine(settings.database_url, owner=SCHEMA, role=settings.database_role)
    try:
        async with create_sessionmaker(engine).begin() as session:
            rewritten, unreadable = await reencrypt_all(session, cipher)
    finally:
        await engine.dispose()
    print(f"re-encrypted {rewritten} accounts; {unreadable} unreadable (their users sign in again)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m polar_organization.tokens", description=__doc__
    )
    parser.add_argument("command", choices=["reencrypt"])
    parser.parse_args(argv)
    return asyncio.run(_reencrypt(OrganizationSettings()))


if __name__ == "__main__":
    sys.exit(main())
