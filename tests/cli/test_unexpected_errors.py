"""The CLI's last resort: whatever goes wrong, a user reads an ``error:`` line, not a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from pgwarden.cli.main import cli

PGWARDEN = Path(sys.executable).parent / "pgwarden"
SECRET_URL = "postgresql://app:hunter2@db.internal/app"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def failing(error: BaseException) -> Any:
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    return fail


@pytest.fixture
def broken_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `pgwarden version` fail inside the library function it calls."""
    error = RuntimeError(f"cannot read the version from {SECRET_URL}\nsecond line")
    monkeypatch.setattr("pgwarden.cli.info.program_version", failing(error))
    monkeypatch.setattr("pgwarden.cli.info.embedded_bin_dir", lambda: Path("/nonexistent"))


@pytest.mark.usefixtures("broken_version")
def test_an_unexpected_error_is_one_line_and_exit_1() -> None:
    result = run("version")
    assert result.exit_code == 1
    assert result.stdout == ""
    error, hint = result.stderr.splitlines()
    assert error == (
        "error: unexpected RuntimeError: cannot read the version from "
        "postgresql://app:***@db.internal/app"
    )
    assert hint.startswith("hint: This is a bug in pgwarden") and "-v" in hint
    assert "Traceback" not in result.output and "hunter2" not in result.output


@pytest.mark.usefixtures("broken_version")
@pytest.mark.parametrize("flag", ["-v", "--verbose"])
def test_verbose_adds_the_traceback_without_the_secret(flag: str) -> None:
    result = run(flag, "version")
    assert result.exit_code == 1
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert 'info.py", line' in result.stderr  # where it happened
    assert "hunter2" not in result.output
    error, hint = result.stderr.strip().splitlines()[-2:]
    assert error.startswith("error: unexpected RuntimeError: cannot read the version")
    assert hint.startswith("hint: ") and "traceback above" in hint


@pytest.mark.usefixtures("broken_version")
def test_an_unexpected_error_in_json_is_the_json_error_shape() -> None:
    result = run("--json", "version")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "RuntimeError"
    assert error["message"].startswith("unexpected RuntimeError: cannot read the version")
    assert error["hint"] and "Traceback" not in result.output


def test_an_error_inside_a_database_command_is_reported(
    monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    monkeypatch.setattr("pgwarden.cli.info.ping_server", failing(ValueError("odd reply")))
    result = run("--database-url", pg_url, "ping")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == "error: unexpected ValueError: odd reply"
    assert "Traceback" not in result.output


def test_an_error_with_an_empty_message_still_names_its_kind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("pgwarden.cli.info.embedded_bin_dir", failing(AssertionError()))
    result = run("version")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == "error: unexpected AssertionError."


def test_a_driver_error_outside_sqlalchemy_is_a_database_error(
    monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    error = psycopg.errors.QueryCanceled("canceling statement due to user request")
    monkeypatch.setattr("pgwarden.cli.info.ping_server", failing(error))
    result = run("--database-url", pg_url, "ping")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: database error: canceling statement due to user request"


def test_ctrl_c_exits_130_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pgwarden.cli.info.embedded_bin_dir", failing(KeyboardInterrupt()))
    result = run("version")
    assert result.exit_code == 130
    assert result.output == ""


def test_a_broken_pipe_to_a_child_is_a_failure_not_silence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # stdout is fine: the pipe that broke is another one, and the work did not finish.
    monkeypatch.setattr("pgwarden.cli.info.embedded_bin_dir", failing(BrokenPipeError(32, "x")))
    result = run("version")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: unexpected BrokenPipeError")


def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    # `pgwarden doctor --list | head -0`: the reader is gone before the first line.
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run(
            [str(PGWARDEN), "doctor", "--list"],
            stdout=write, stderr=subprocess.PIPE, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (141, "")


def test_the_installed_command_shows_a_database_failure_without_a_traceback(
    pg_url: str, pg_engine: sa.Engine
) -> None:
    database = sa.make_url(pg_url).database
    with pg_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE users (id bigint PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO users VALUES (1)"))
        conn.execute(sa.text(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on'))
    result = subprocess.run(
        [str(PGWARDEN), "--database-url", pg_url, "erase-user", "--user-table", "users",
         "--user-id", "1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("error: database error: cannot execute")
    assert "read-only transaction" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_installed_command_reports_an_unexpected_error_in_one_line() -> None:
    script = (
        "import sys\n"
        "import pgwarden.cli.info as info\n"
        "def broken():\n"
        "    raise OSError(5, 'Input/output error')\n"
        "info.embedded_bin_dir = broken\n"
        "from pgwarden.cli.main import main\n"
        "main(sys.argv[1:])\n"
    )
    quiet, verbose = (
        subprocess.run(
            [sys.executable, "-c", script, *flags, "version"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        for flags in ([], ["-v"])
    )
    assert quiet.returncode == verbose.returncode == 1
    assert quiet.stderr.splitlines()[0] == "error: unexpected OSError: [Errno 5] Input/output error"
    assert "Traceback" not in quiet.stderr
    assert verbose.stderr.startswith("Traceback (most recent call last):")
