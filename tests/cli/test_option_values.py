"""A value given on the command line that its column's type cannot read is a user error
(exit 2) naming the option and the type, and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from pgwarden.cli.main import cli
from pgwarden.transfer import list_runs

SCHEMA = """
CREATE TABLE users (id bigint PRIMARY KEY, name text);
CREATE TABLE devices (id uuid PRIMARY KEY);
CREATE TABLE posts (
  id int PRIMARY KEY,
  user_id bigint REFERENCES users (id) ON DELETE CASCADE,
  at timestamptz NOT NULL
);
INSERT INTO users VALUES (1, 'ann');
INSERT INTO devices VALUES ('8a3e0f3c-8d0c-4f0e-9a35-2f1a0c7b5e11');
INSERT INTO posts VALUES (1, 1, '2026-01-15 10:00+00');
"""


@pytest.fixture
def url(pg_url: str, pg_engine: sa.Engine) -> str:
    with pg_engine.begin() as conn:
        conn.execute(sa.text(SCHEMA))
    return pg_url


def pgwarden_cli(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--database-url", url, *args])


def error_lines(result: Result) -> tuple[str, str]:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    error, hint = result.stderr.splitlines()
    return error, hint


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("abc", 'invalid input syntax for type bigint: "abc"'),
        ("1.5", 'invalid input syntax for type bigint: "1.5"'),
        ("", 'invalid input syntax for type bigint: ""'),
        ("99999999999999999999", 'value "99999999999999999999" is out of range for type bigint'),
    ],
)
@pytest.mark.parametrize("dry_run", [False, True])
def test_erase_user_names_user_id_and_its_type(
    url: str, pg_engine: sa.Engine, value: str, detail: str, dry_run: bool
) -> None:
    dry = ["--dry-run"] if dry_run else []
    result = pgwarden_cli(url, "erase-user", "--user-table", "users", "--user-id", value, *dry)
    error, hint = error_lines(result)
    assert error == f"error: --user-id {value!r} is not a valid bigint: {detail}"
    assert hint == "hint: Give --user-id a value PostgreSQL reads as bigint."
    with pg_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one() == 1
        assert conn.execute(sa.text("SELECT count(*) FROM posts")).scalar_one() == 1
        assert list_runs(conn) == []


def test_erase_user_with_a_uuid_key(url: str) -> None:
    result = pgwarden_cli(url, "erase-user", "--user-table", "devices", "--user-id", "42")
    error, _ = error_lines(result)
    assert error.startswith("error: --user-id '42' is not a valid uuid: ")


def test_erase_user_in_json_names_the_option(url: str) -> None:
    result = pgwarden_cli(url, "--json", "erase-user", "--user-table", "users", "--user-id", "x")
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "InvalidValue"
    assert error["message"].startswith("--user-id 'x' is not a valid bigint")


def test_a_valid_id_of_nobody_is_still_the_usual_error(url: str) -> None:
    result = pgwarden_cli(url, "erase-user", "--user-table", "users", "--user-id", "7")
    assert result.exit_code == 2
    assert "--user-id" not in result.stderr and "no row with id = 7" in result.stderr


def test_export_user_id(url: str, tmp_path: Path) -> None:
    out = tmp_path / "me"
    result = pgwarden_cli(url, "export", str(out), "--user-table", "users", "--user-id", "ann")
    error, hint = error_lines(result)
    assert error.startswith("error: --user-id 'ann' is not a valid bigint: ")
    assert hint == "hint: Give --user-id a value PostgreSQL reads as bigint."
    assert not out.exists()


@pytest.mark.parametrize("option", ["--since", "--until"])
def test_export_date_bounds(url: str, tmp_path: Path, option: str) -> None:
    out = tmp_path / "out"
    result = pgwarden_cli(
        url, "export", str(out), "--table", "public.posts", "--date-column", "at",
        "--since", "2026-01-01", option, "last tuesday",
    )  # fmt: skip
    error, hint = error_lines(result)
    assert error.startswith(
        f"error: {option} 'last tuesday' is not a valid timestamp with time zone: "
        'invalid input syntax for type timestamp with time zone: "last tuesday"'
    )
    assert hint == f"hint: Give {option} a value PostgreSQL reads as timestamp with time zone."
    assert not out.exists()


def test_export_csv_date_out_of_range(url: str, tmp_path: Path) -> None:
    out = tmp_path / "posts.csv"
    result = pgwarden_cli(
        url, "export-csv", "public.posts", str(out), "--date-column", "at", "--since", "2026-13-45"
    )
    error, hint = error_lines(result)
    assert error == (
        "error: --since '2026-13-45' does not fit its column's type: "
        'date/time field value out of range: "2026-13-45"'
    )
    assert hint.startswith("hint: Give --since a date or time as PostgreSQL reads it, such as ")


def test_a_bad_value_inside_where_keeps_its_position(url: str, tmp_path: Path) -> None:
    # Not an option's whole value: the filter's own error, which points into the text.
    result = pgwarden_cli(url, "export", str(tmp_path / "o"), "--table", "public.posts",
                          "--where", "id = 'abc'")  # fmt: skip
    assert result.exit_code == 2
    assert "at position 6" in result.stderr
