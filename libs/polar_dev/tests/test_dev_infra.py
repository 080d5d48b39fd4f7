"""The embedded servers, used when POLAR_DATABASE_URL / POLAR_NATS_URL are not set."""

import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import nats
import pytest
from polar_dev.infra import DATABASE_URL_ENV, NATS_URL_ENV, infra
from polar_dev.paths import dev_dir


async def test_embedded_postgres_and_nats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.delenv(NATS_URL_ENV, raising=False)
    with infra(ephemeral=True) as servers:
        assert servers.embedded_postgres
        assert servers.embedded_nats
        assert servers.data_dir is not None

        connection = await asyncpg.connect(servers.database_url)
        try:
            assert await connection.fetchval("SELECT current_user") == "postgres"
        finally:
            await connection.close()

        client = await nats.connect(servers.nats_url)
        try:
            js = client.jetstream()
            await js.add_stream(name="EMBEDDED", subjects=["embedded.>"])
            ack = await js.publish("embedded.x", b"1")
            assert ack.stream == "EMBEDDED"
        finally:
            await client.close()
    assert not servers.data_dir.exists()


def test_given_urls_are_used_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, "postgresql://u@db.example:5432/x")
    monkeypatch.setenv(NATS_URL_ENV, "nats://nats.example:4222")
    with infra() as servers:
        assert servers.env() == {
            DATABASE_URL_ENV: "postgresql://u@db.example:5432/x",
            NATS_URL_ENV: "nats://nats.example:4222",
        }
        assert not servers.embedded_postgres
        assert servers.data_dir is None


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data folder for embedded servers, not under pytest's temporary root: a concurrent
    pytest run resets that to mode 0700, and PostgreSQL (as root we run it as an unprivileged
    user) must reach its data."""
    path = Path(tempfile.mkdtemp(prefix="test-ports-", dir=dev_dir()))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_embedded_ports_are_kept_across_restarts(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    tmp_path = data_dir
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.delenv(NATS_URL_ENV, raising=False)
    with infra(data_dir=tmp_path) as first:
        pass
    with infra(data_dir=tmp_path) as second:
        pass
    assert second.env() == first.env()

    # The remembered NATS port taken by someone else: another port, said out loud, kept.
    taken = int(first.nats_url.rsplit(":", 1)[1])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        with infra(data_dir=tmp_path) as third:
            pass
    assert third.nats_url != first.nats_url
    assert f"port {taken} is taken by another program" in capfd.readouterr().err
    with infra(data_dir=tmp_path) as fourth:
        pass
    assert fourth.nats_url == third.nats_url
