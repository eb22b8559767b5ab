"""Client programs get a --dbname without secrets; the secrets go by environment or file."""

from __future__ import annotations

import gc
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from credentials_support import Launches, SecretURL, launches, secret_url
from pgwarden.db import clients
from pgwarden.db.binaries import find_binary
from pgwarden.db.engines import create_engine
from pgwarden.errors import ConfigError
from pgwarden.transfer.export._psqlread import SnapshotReader

__all__ = ["launches", "secret_url"]  # fixtures


@pytest.mark.parametrize(
    ("url", "dbname"),
    [
        ("postgresql://app:S3cret@db:5/app", "postgresql://app@db:5/app"),
        ("postgresql+psycopg://app@db/app?password=S3cret", "postgresql://app@db/app"),
        ("postgresql://app:other@db/app?PassWord=S3cret&sslmode=require",
         "postgresql://app@db/app?sslmode=require"),
    ],
)  # fmt: skip
def test_the_password_goes_through_the_environment(url: str, dbname: str) -> None:
    args = clients.client_args(url, application_name="pgwarden-test")
    assert args.dbname == dbname
    assert args.env["PGPASSWORD"] == "S3cret"
    assert "PGSERVICEFILE" not in args.env


def test_an_sslpassword_goes_through_a_service_file_only_we_can_read() -> None:
    url = "postgresql://app@db/app?sslpassword=Ssl%20S3cret&password=S3cret&sslmode=verify-full"
    args = clients.client_args(url, application_name="pgwarden-test")
    assert args.dbname == "postgresql://app@db/app?service=pgwarden&sslmode=verify-full"
    service = Path(args.env["PGSERVICEFILE"])
    assert service.read_text() == "[pgwarden]\nsslpassword=Ssl S3cret\n"
    assert service.stat().st_mode & 0o777 == 0o600
    assert service.parent.stat().st_mode & 0o777 == 0o700
    del args
    gc.collect()
    assert not service.exists()


@pytest.mark.parametrize(
    ("url", "environment", "fragment"),
    [
        ("postgresql://app@db/app?sslpassword=x&service=prod", {}, "service"),
        ("postgresql://app@db/app?sslpassword=x", {"PGSERVICE": "prod"}, "service"),
        ("postgresql://app@db/app?sslpassword=%20x", {}, "space"),
        ("postgresql://app@db/app?sslpassword=x%0Ay", {}, "line break"),
    ],
)
def test_an_sslpassword_that_cannot_travel_is_refused(
    url: str, environment: dict[str, str], fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=fragment) as info:
        clients.client_args(url, application_name="pgwarden-test")
    assert info.value.hint


def test_connection_parameters_lose_their_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "inherited")
    params = {"host": "db", "user": "app", "dbname": "app", "sslpassword": "Ssl", "password": "pw"}
    args = clients.conninfo_args(params, application_name="pgwarden-test")
    assert args.dbname == "host=db user=app dbname=app service=pgwarden"
    assert args.env["PGPASSWORD"] == "pw"
    assert "sslpassword=Ssl" in Path(args.env["PGSERVICEFILE"]).read_text()
    # A connection that used no password passes none on, not this process's.
    bare = clients.conninfo_args({"host": "db"}, application_name="pgwarden-test")
    assert "PGPASSWORD" not in bare.env and bare.dbname == "host=db"


def test_psql_connects_with_the_secrets_it_was_given(secret_url: SecretURL) -> None:
    psql = find_binary("psql")
    args = clients.client_args(secret_url.url, application_name="pgwarden-test")
    secret_url.assert_absent(args.dbname, where="command line")
    done = subprocess.run(
        [str(psql.path), "-X", "-A", "-t", "-w", f"--dbname={args.dbname}",
         "-c", "SELECT current_user"],
        capture_output=True, text=True, env=args.env, check=False, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(sa.engine.make_url(secret_url.url).username)


def test_the_exports_psql_reader_gets_no_secret_on_its_command_line(
    secret_url: SecretURL, launches: Launches
) -> None:
    engine = create_engine(secret_url.url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            reader = SnapshotReader.open(conn, [])
            assert reader is not None
            secret_url.assert_absent(" ".join(reader.args()), where="command line")
            assert b"".join(reader.copy("COPY (SELECT 42) TO STDOUT", chunk_size=64)) == b"42\n"
    finally:
        engine.dispose()
    started = launches.named("psql")
    assert len(started) == 2  # the probe, the COPY
    for launch in started:
        secret_url.assert_absent(" ".join(launch.args), launch.cmdline, where="command line")
        assert launch.env["PGPASSWORD"] == secret_url.password
