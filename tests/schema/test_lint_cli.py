"""``pgwarden migrations lint``: the findings, their JSON, and the exit code at --fail-on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine

import pgwarden
from pgwarden.cli.main import PgwardenGroup, _add_global_options
from pgwarden.cli.migrations_lint import lint

ROOT = Path(pgwarden.__file__).parents[2]
# The `migrations` group is built elsewhere; the command runs the same under any group.
GROUP = PgwardenGroup("migrations", commands={"lint": lint})
_add_global_options(GROUP)


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(GROUP, ["lint", *args], env=env, prog_name="migrations")


@pytest.fixture
def migration(tmp_path: Path) -> Path:
    path = tmp_path / "0007_orders.sql"
    path.write_text(
        "SET lock_timeout = '2s';\n"
        "CREATE INDEX ix_orders_customer ON orders (customer_id);\n"
        "ALTER TABLE orders DROP COLUMN legacy;\n"
    )
    return path


def test_findings_are_listed_with_their_fix_and_fail_the_run(migration: Path) -> None:
    result = run(str(migration))
    assert result.exit_code == 1, result.output
    assert "require-concurrent-index-creation" in result.output
    assert f"{migration}:2:1" in result.output
    assert "CREATE INDEX CONCURRENTLY ix_orders_customer ON orders (customer_id);" in result.output
    assert "squawk 2." in result.output


def test_json_has_every_finding_and_fail_on_sets_the_exit_code(migration: Path) -> None:
    result = run(str(migration), "--json", "--fail-on", "high", "--disable", "ban-drop-column")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    rules = {f["rule"] for f in document["findings"]}
    assert "require-concurrent-index-creation" in rules and "ban-drop-column" not in rules
    assert document["failed"] is False and document["live"] is False
    finding = next(
        f for f in document["findings"] if f["rule"] == "require-concurrent-index-creation"
    )
    assert finding["line"] == 2 and finding["where"].endswith(":2:1")


def test_without_squawk_runs_pgwarden_rules_alone(migration: Path) -> None:
    result = run(str(migration), "--json", "--without-squawk")
    document = json.loads(result.stdout)
    assert document["squawk"] is None
    assert all(f["sources"] == ["pgwarden"] for f in document["findings"])


def test_with_a_database_an_empty_table_passes(
    migration: Path, pg_engine: Engine, pg_url: str
) -> None:
    with pg_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE orders (id bigint, customer_id bigint, legacy text)"))
    migration.write_text(
        "SET lock_timeout = '2s';\nCREATE INDEX ix_orders_customer ON orders (customer_id);\n"
    )
    result = run(str(migration), "--json", "--sample-seconds", "0", "--database-url", pg_url)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    finding = next(
        f for f in document["findings"] if f["rule"] == "require-concurrent-index-creation"
    )
    assert finding["severity"] == "low" and finding["table"]["rows"] == 0
    assert document["live"] is True


def test_learnhub_revisions_pass() -> None:
    result = run(str(ROOT / "examples" / "learnhub" / "alembic.ini"))
    assert result.exit_code == 0, result.output
    assert "0 high, 0 medium" in result.output


def test_a_missing_target_is_a_user_error(tmp_path: Path) -> None:
    result = run(str(tmp_path / "nope.sql"))
    assert result.exit_code == 2
    assert "does not exist" in result.output and "Traceback" not in result.output
    assert run(str(tmp_path / "x.sql"), "--revision", "a1").exit_code == 2
