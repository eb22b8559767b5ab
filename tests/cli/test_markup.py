"""Names from databases, storage and the command line print as they are: never read as Rich
markup (``[/x]`` crashed, ``[bold]x`` lost its brackets) or emoji codes (``:thumbs_up:``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from pgwarden.cli.main import cli

NAMES = ["[/x]", "[bold]x", "[link=https://e.invalid]x", "[/]", ":thumbs_up:"]

SCHEMA = """
CREATE TABLE "[/x]" (id int PRIMARY KEY, "[bold]c" text) WITH (autovacuum_enabled = off);
INSERT INTO "[/x]" VALUES (1, '[link=https://e.invalid]v');
CREATE INDEX "[link=https://e.invalid]dup" ON "[/x]" ("[bold]c");
CREATE INDEX ":thumbs_up:" ON "[/x]" ("[bold]c");
"""


def run(*args: str) -> Result:
    # Wide enough that no table cell is cut short.
    result = CliRunner(env={"COLUMNS": "200"}).invoke(cli, list(args))
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture
def url(pg_url: str, pg_engine: sa.Engine) -> str:
    with pg_engine.begin() as conn:
        conn.execute(sa.text(SCHEMA))
    return pg_url


@pytest.mark.parametrize("name", NAMES)
def test_backup_info_quotes_an_unknown_id_as_given(tmp_path: Path, name: str) -> None:
    result = run("backup", "info", name, "--storage", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == f"error: {name!r} is not a backup id."


@pytest.mark.parametrize("name", NAMES)
def test_an_error_message_and_its_hint_print_literally(name: str) -> None:
    result = run("doctor", "--set", name)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == f"error: --set {name!r} is not CHECK.THRESHOLD=VALUE."


def test_backup_create_info_and_list_print_names_literally(url: str, tmp_path: Path) -> None:
    storage = str(tmp_path / "backups")
    created = run("--database-url", url, "backup", "create", "--storage", storage,
                  "--exclude-table", "[/y]", "--exclude-table", "[bold]nothing")  # fmt: skip
    assert created.exit_code == 0, created.output
    listed = run("--json", "backup", "list", "--storage", storage)
    backup_id = json.loads(listed.stdout)[0]["id"]
    assert f"backup {backup_id} of " in created.stdout
    info = run("backup", "info", backup_id, "--storage", storage)
    assert info.exit_code == 0, info.output
    assert "exclude_tables=[/y],[bold]nothing" in info.stdout
    assert "public.[/x]" in info.stdout
    listed = run("backup", "list", "--storage", storage)
    assert listed.exit_code == 0 and backup_id in listed.stdout


def test_export_and_import_print_names_literally(url: str, tmp_path: Path) -> None:
    out = tmp_path / "[bold]out :thumbs_up:"
    exported = run("--database-url", url, "export", str(out), "--table", "[/x]")
    assert exported.exit_code == 0, exported.output
    assert "public.[/x]" in exported.stdout
    assert f"to {out} (" in exported.stdout
    imported = run("--database-url", url, "import", str(out), "--mode", "upsert", "--dry-run")
    assert imported.exit_code == 0, imported.output
    assert "public.[/x]" in imported.stdout
    missing = run("--database-url", url, "export", str(tmp_path / "o"), "--table", "[bold]nope")
    assert missing.exit_code == 2
    assert missing.stderr.startswith("error: no table '[bold]nope' in the database.")


def test_erase_user_quotes_the_table_it_cannot_find(url: str) -> None:
    result = run("--database-url", url, "erase-user", "--user-table", "[link=https://e.invalid]u",
                 "--user-id", "1")  # fmt: skip
    assert result.exit_code == 2
    assert "[link=https://e.invalid]u" in result.stderr.splitlines()[0]


def test_doctor_prints_findings_literally(url: str) -> None:
    result = run("--database-url", url, "doctor", "--check", "duplicate_indexes",
                 "--check", "autovacuum_disabled")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert 'index public."[link=https://e.invalid]dup" on [/x] is a duplicate of :thumbs_up:' in (
        result.stdout
    )
    assert 'fix: ALTER TABLE public."[/x]" RESET (autovacuum_enabled);' in result.stdout
    assert "\N{THUMBS UP SIGN}" not in result.stdout
