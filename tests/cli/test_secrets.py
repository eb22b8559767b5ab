"""A password in the URL's query string reaches no output, log, manifest or command line."""

from __future__ import annotations

import gc
import json
import logging
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from sqlalchemy.pool import NullPool

from credentials_support import (
    Launches,
    SecretURL,
    launches,
    raw_records,
    record_text,
    secret_url,
)
from pgwarden.cli.main import cli
from pgwarden.db.engines import create_engine

__all__ = ["launches", "raw_records", "secret_url"]  # fixtures


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _everything(result: Result) -> str:
    return f"{result.stdout}\n{result.stderr}\n{result.exception!r}"


def test_ping_shows_the_url_without_its_secrets(
    secret_url: SecretURL, raw_records: list[logging.LogRecord]
) -> None:
    shown = json.loads(
        _check(_run("--database-url", secret_url.url, "-vv", "--json", "ping"), secret_url)
    )
    assert "password=***" in shown["url"] and "sslpassword=***" in shown["url"]
    assert shown["user"].startswith("pgwarden_secret_")  # it did connect as that role
    text = _check(_run("--database-url", secret_url.url, "-vv", "ping"), secret_url)
    assert "Connected to" in text and "postgresql://pgwarden_secret_" in text
    assert "password=***" in text
    assert raw_records  # -vv: DEBUG records were made, and seen
    secret_url.assert_absent(*map(record_text, raw_records), where="log")


@pytest.mark.parametrize(
    "change",
    [
        {"port": "1"},  # nothing listens there
        {"database": "no_such_database"},
        {"query": "PASSWORD"},  # libpq refuses the parameter
    ],
    ids=["refused", "no-database", "bad-parameter"],
)
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_a_connection_error_shows_no_secret(
    secret_url: SecretURL,
    raw_records: list[logging.LogRecord],
    change: dict[str, str],
    as_json: bool,
) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(secret_url.url)
    if "port" in change:
        url = url.set(port=int(change["port"]))
    if "database" in change:
        url = url.set(database=change["database"])
    if "query" in change:
        url = url.update_query_dict({"PASSWORD": secret_url.password})
    args = ["--database-url", url.render_as_string(hide_password=False), "-vv"]
    result = _run(*args, *(["--json"] if as_json else []), "ping")
    assert result.exit_code == 2, _everything(result)
    assert "Traceback" not in _everything(result)
    message = json.loads(result.stdout)["error"]["message"] if as_json else result.stderr
    assert "cannot connect to postgresql://pgwarden_secret_" in message
    assert "password=***" in message
    secret_url.assert_absent(_everything(result), where="error")
    assert raw_records  # -vv: DEBUG records were made, and seen
    secret_url.assert_absent(*map(record_text, raw_records), where="log")


def test_a_backup_keeps_the_secrets_off_the_manifest_and_the_command_line(
    secret_url: SecretURL,
    raw_records: list[logging.LogRecord],
    launches: Launches,
    tmp_path: Path,
) -> None:
    engine = create_engine(secret_url.url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE note (id int PRIMARY KEY, body text)"))
        conn.execute(sa.text("INSERT INTO note VALUES (1, 'kept')"))
    engine.dispose()
    store = tmp_path / "backups"
    args = ["--database-url", secret_url.url, "-vv", "--json", "backup", "create", "--storage"]
    result = _check(_run(*args, str(store)), secret_url)
    manifest = json.loads(result)["manifest"]
    assert manifest["database_url"].startswith("postgresql://pgwarden_secret_")
    assert "password=***" in manifest["database_url"]
    for path in store.rglob("*"):  # manifest.json, the dump, the lock's traces
        if path.is_file():
            secret_url.assert_absent(path.read_bytes(), where=str(path.relative_to(store)))
    assert raw_records  # -vv: DEBUG records were made, and seen
    secret_url.assert_absent(*map(record_text, raw_records), where="log")

    [pg_dump] = [
        launch for launch in launches.named("pg_dump") if "--snapshot" in " ".join(launch.args)
    ]
    for launch in launches.seen:
        secret_url.assert_absent(" ".join(launch.args), launch.cmdline, where="command line")
    # The secrets went through the environment and a service file only we can read.
    assert pg_dump.env["PGPASSWORD"] == secret_url.password
    assert "service=pgwarden" in pg_dump.args[-1]
    assert pg_dump.service_file == f"[pgwarden]\nsslpassword={secret_url.sslpassword}\n"
    assert pg_dump.service_mode == 0o600
    gc.collect()
    assert not Path(pg_dump.env["PGSERVICEFILE"]).exists()


def _check(result: Result, secret_url: SecretURL) -> str:
    assert result.exit_code == 0, _everything(result)
    secret_url.assert_absent(_everything(result))
    return result.stdout
