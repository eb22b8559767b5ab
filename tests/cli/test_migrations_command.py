"""``pgwarden migrations``: each command on learnhub, checked through the database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pgwarden.cli.main import cli
from schema_support import LEARNHUB_INI, execute

pytestmark = pytest.mark.usefixtures("learnhub_app_role")
CONFIG = ["-c", str(LEARNHUB_INI)]


def pgwarden(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--database-url", url, "migrations", *args])


def report(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_status_upgrade_and_history(pg_url: str) -> None:
    before = report(pgwarden(pg_url, "status", *CONFIG, "--json"))
    assert before["current"] == [] and [r["revision"] for r in before["pending"]] == [
        "0001",
        "0002",
    ]
    assert before["up_to_date"] is False
    done = pgwarden(pg_url, "upgrade", *CONFIG, "--no-backup", "--lock-timeout", "2")
    assert done.exit_code == 0, done.output
    assert "0001" in done.stdout and "0002" in done.stdout and "seconds" in done.stdout
    assert "done in" in done.stderr  # each revision's time as it goes
    assert "up to date" in pgwarden(pg_url, "status", *CONFIG).stdout
    history = report(pgwarden(pg_url, "history", *CONFIG, "--json"))
    assert [(r["revision"], r["applied"]) for r in history] == [("0002", True), ("0001", True)]


def test_upgrade_dry_run_prints_sql_and_changes_nothing(pg_url: str) -> None:
    result = pgwarden(pg_url, "upgrade", *CONFIG, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "CREATE TABLE users" in result.stdout
    assert execute(pg_url, "SELECT to_regclass('alembic_version')")[0][0] is None


def test_upgrade_needs_a_storage_for_its_backup(pg_url: str) -> None:
    execute(pg_url, "CREATE TABLE existing (id int)")
    result = pgwarden(pg_url, "upgrade", *CONFIG)
    assert result.exit_code == 2
    assert "no backup storage" in result.output and "--no-backup" in result.output
    assert execute(pg_url, "SELECT to_regclass('alembic_version')")[0][0] is None


def test_a_downgrade_dropping_rows_is_refused_then_forced(seeded_url: str) -> None:
    refused = pgwarden(seeded_url, "downgrade", "-1", *CONFIG, "--no-backup")
    assert refused.exit_code == 2
    assert "public.content.visibility" in refused.output and "--force" in refused.output
    assert report(pgwarden(seeded_url, "status", *CONFIG, "--json"))["current"] == ["0002"]
    planned = pgwarden(seeded_url, "downgrade", "-1", *CONFIG, "--dry-run")
    assert planned.exit_code == 0 and "would drop public.content.visibility" in planned.stdout
    forced = report(
        pgwarden(seeded_url, "--json", "downgrade", "-1", *CONFIG, "--no-backup", "--force")
    )
    assert forced["after"] == ["0001"] and forced["data_losses"][0]["column"] == "visibility"


def test_check_without_round_trips(pg_url: str) -> None:
    result = pgwarden(
        pg_url, "check", *CONFIG, "--models", "learnhub.models:Base", "--no-round-trip"
    )
    assert result.exit_code == 0, result.output
    assert "ok: 2 revisions" in result.stdout
    skipped = report(pgwarden(pg_url, "check", *CONFIG, "--no-round-trip", "--json"))
    assert skipped["ok"] is True and skipped["skipped"]


def test_init_writes_once(tmp_path: Path, pg_url: str) -> None:
    first = pgwarden(pg_url, "init", str(tmp_path / "app"))
    assert first.exit_code == 0, first.output
    assert (tmp_path / "app" / "alembic.ini").is_file()
    again = pgwarden(pg_url, "init", str(tmp_path / "app"))
    assert again.exit_code == 2 and "will not overwrite" in again.output
    listed = pgwarden(pg_url, "history", "-c", str(tmp_path / "app" / "alembic.ini"), "--offline")
    assert listed.exit_code == 0, listed.output


def test_bad_inputs_are_clear_errors(pg_url: str, tmp_path: Path) -> None:
    missing = pgwarden(pg_url, "status", "-c", str(tmp_path / "alembic.ini"))
    assert missing.exit_code == 2 and "no Alembic config" in missing.output
    assert "Traceback" not in missing.output
    bad = pgwarden(pg_url, "upgrade", "nope", *CONFIG, "--no-backup")
    assert bad.exit_code == 2 and "nope" in bad.output and "history" in bad.output
    down = pgwarden(pg_url, "downgrade", "base", *CONFIG)
    assert down.exit_code == 2 and "at base" in down.output
    unreachable = pgwarden("postgresql://nobody:secret@127.0.0.1:1/none", "status", *CONFIG)
    assert unreachable.exit_code == 2 and "secret" not in unreachable.output
    assert execute(pg_url, "SELECT to_regclass('alembic_version')")[0][0] is None
