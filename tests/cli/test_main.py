from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from pgwarden.cli.main import cli

BAD_URL = "postgresql://u:secret@127.0.0.1:1/x"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_version_lists_the_parts(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--json", "version"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["pgwarden"] and info["sqlalchemy"].startswith("2.")
    assert info["embedded_postgresql"].split(".")[0].isdigit()


def test_ping_reports_the_server_it_reached(runner: CliRunner, pg_url: str) -> None:
    result = runner.invoke(cli, ["--database-url", pg_url, "--json", "ping"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        version = conn.execute(sa.text("SHOW server_version")).scalar_one()
    engine.dispose()
    assert report["server_version"] == version
    assert report["latency_ms"] > 0
    names = [ext["name"] for ext in report["extensions"]]
    assert names[:4] == ["pg_stat_statements", "pgstattuple", "amcheck", "hypopg"]
    states = {ext["name"]: ext["state"] for ext in report["extensions"]}
    assert states["amcheck"] in {"installed", "available"}


def test_ping_in_human_form(runner: CliRunner, pg_url: str) -> None:
    result = runner.invoke(cli, ["--database-url", pg_url, "ping"])
    assert result.exit_code == 0, result.output
    assert "Connected" in result.stdout and "PostgreSQL" in result.stdout
    assert "pg_stat_statements" in result.stdout


def test_ping_sees_an_installed_extension(runner: CliRunner, pg_url: str) -> None:
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE EXTENSION amcheck"))
    engine.dispose()
    result = runner.invoke(cli, ["--database-url", pg_url, "--json", "ping"])
    states = {ext["name"]: ext["state"] for ext in json.loads(result.stdout)["extensions"]}
    assert states["amcheck"] == "installed"


@pytest.mark.parametrize("as_json", [False, True])
def test_unreachable_server_is_a_user_error_without_the_password(
    runner: CliRunner, as_json: bool
) -> None:
    args = ["--database-url", BAD_URL, *(["--json"] if as_json else []), "-vv", "ping"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2
    assert "secret" not in result.output
    assert "Traceback" not in result.output
    if as_json:
        error = json.loads(result.stdout)["error"]
        assert error["type"] == "ConnectionFailed"
        assert error["hint"]
    else:
        lines = result.stderr.strip().splitlines()[-2:]  # after the -vv log lines
        assert lines[0].startswith("error: cannot connect to postgresql://u:***@127.0.0.1:1/x")
        assert lines[1].startswith("hint: ")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("mysql://root:secret@db/app", "'mysql' database backend"),
        ("not a url", "not a URL"),
        ("postgresql://u:secret@127.0.0.1:99999/x", "port 99999"),
    ],
)
def test_malformed_urls_are_user_errors(runner: CliRunner, url: str, fragment: str) -> None:
    result = runner.invoke(cli, ["--database-url", url, "ping"])
    assert result.exit_code == 2
    assert fragment in result.stderr
    assert "secret" not in result.output
    assert "hint:" in result.stderr


def test_a_bad_setting_is_named(runner: CliRunner, pg_url: str) -> None:
    result = runner.invoke(cli, ["--database-url", pg_url, "ping"], env={"DB_POOL_SIZE": "lots"})
    assert result.exit_code == 2
    assert "DB_POOL_SIZE='lots'" in result.stderr


def test_no_database_anywhere_says_what_to_do(runner: CliRunner, tmp_path: Path) -> None:
    env = {"PGWARDEN_DATA_DIR": str(tmp_path / "none")}
    result = runner.invoke(cli, ["ping"], env=env)
    assert result.exit_code == 2
    assert "no database URL given" in result.stderr
    assert "pgwarden server start" in result.stderr


def test_unknown_command_and_option_are_usage_errors(runner: CliRunner) -> None:
    assert runner.invoke(cli, ["pong"]).exit_code == 2
    assert runner.invoke(cli, ["ping", "--samples", "0"]).exit_code == 2


def test_the_installed_command_exits_2_with_no_traceback() -> None:
    script = Path(sys.executable).parent / "pgwarden"
    result = subprocess.run(
        [str(script), "--database-url", BAD_URL, "ping"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PGWARDEN_LOG_LEVEL": "DEBUG"},
    )  # fmt: skip
    assert result.returncode == 2
    assert "secret" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    error, hint = result.stderr.strip().splitlines()[-2:]
    assert error.startswith("error: ") and hint.startswith("hint: ")
