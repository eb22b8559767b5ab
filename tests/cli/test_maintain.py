"""``pgwarden vacuum``, ``analyze`` and ``reindex``, checked through the database."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from maintain_support import Database
from pgwarden.cli.main import cli


@pytest.fixture
def db(pg_url: str) -> Iterator[Database]:
    database = Database(pg_url)
    try:
        yield database
    finally:
        database.dispose()


def pgwarden(db: Database, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--database-url", db.url, *args])


def report(result: Result) -> Any:
    return json.loads(result.stdout)


def test_vacuum_dry_run_prints_the_plan_and_changes_nothing(db: Database) -> None:
    db.bloated("orders", rows=5000, deleted=3000)
    result = pgwarden(db, "vacuum", "--table", "orders", "--analyze", "--dry-run")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "SET lock_timeout = '5000ms';" in lines
    assert "SET statement_timeout = '0';" in lines
    assert "VACUUM (ANALYZE) public.orders;" in lines
    assert "60.0 %" in result.stdout  # the dead tuples
    assert "1 statement planned, nothing run." in result.stdout
    assert db.stat("orders", "last_vacuum") is None
    assert db.stat("orders", "n_dead_tup") >= 3000


def test_vacuum_auto_in_json_picks_the_bloated_table(db: Database) -> None:
    db.bloated("bloated", rows=5000, deleted=3000)
    db.bloated("clean", rows=5000, deleted=10)
    result = pgwarden(db, "--json", "vacuum", "--auto", "--threshold", "20")
    assert result.exit_code == 0, result.output
    data = report(result)
    assert [op["statement"] for op in data["operations"]] == ["VACUUM public.bloated"]
    assert data["operations"][0]["status"] == "ok"
    assert data["operations"][0]["target"]["dead_tuples"] >= 3000
    assert data["below_threshold"] == 1 and data["ok"] is True
    assert db.stat("bloated", "last_vacuum") is not None
    assert db.stat("clean", "last_vacuum") is None
    # progress and completion as JSON lines on stderr, the report alone on stdout
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert {"event": "done", "statement": "VACUUM public.bloated", "status": "ok"}.items() <= {
        **events[-1]
    }.items()


def test_vacuum_of_an_unknown_table_is_a_user_error(db: Database) -> None:
    db.run("CREATE TABLE t (id int)")
    result = pgwarden(db, "vacuum", "--table", "t", "--table", "x; DROP TABLE t")
    assert result.exit_code == 2
    assert "error: unknown table: 'x; DROP TABLE t'" in result.stderr
    assert "hint:" in result.stderr and "Traceback" not in result.output
    assert db.stat("t", "last_vacuum") is None
    json_result = pgwarden(db, "--json", "vacuum", "--table", "nosuch")
    assert json_result.exit_code == 2
    assert report(json_result)["error"]["type"] == "UserError"


def test_vacuum_full_over_the_limit_is_refused_and_forced(db: Database) -> None:
    db.bloated("t", rows=20000, deleted=19000)
    size = db.scalar("SELECT pg_relation_size('t')")
    result = pgwarden(db, "vacuum", "--full", "--table", "t", "--max-full-size", "64kB")
    assert result.exit_code == 2
    assert "ACCESS EXCLUSIVE" in result.stderr and "pg_repack" in result.stderr
    assert db.scalar("SELECT pg_relation_size('t')") == size
    forced = pgwarden(db, "vacuum", "--full", "--table", "t", "--max-full-size", "64kB", "--force")
    assert forced.exit_code == 0, forced.output
    assert "warning:" in forced.stderr and "ACCESS EXCLUSIVE" in forced.stderr
    assert db.scalar("SELECT pg_relation_size('t')") < size / 5


def test_a_locked_table_fails_with_exit_1_and_the_others_are_done(db: Database) -> None:
    db.run("CREATE TABLE a (id int)", "CREATE TABLE b (id int)")
    with db.transaction("LOCK TABLE a IN ACCESS EXCLUSIVE MODE") as holder:
        human = pgwarden(db, "vacuum", "--lock-timeout", "0.2")
        as_json = pgwarden(db, "--json", "vacuum", "--lock-timeout", "0.2")
    assert human.exit_code == 1
    assert "failed: VACUUM public.a: could not lock public.a" in human.stdout
    assert f"pid {holder} (" in human.stdout and "holds AccessExclusiveLock" in human.stdout
    assert f"pg_terminate_backend({holder})" in human.stdout
    assert "vacuum: 1 ok, 1 failed." in human.stdout
    assert as_json.exit_code == 1
    ops = {op["target"]["name"]: op for op in report(as_json)["operations"]}
    assert ops["a"]["status"] == "failed" and ops["b"]["status"] == "ok"
    assert ops["a"]["blockers"][0]["pid"] == holder
    assert db.stat("b", "last_vacuum") is not None
    assert db.stat("a", "last_vacuum") is None


def test_threshold_without_auto_is_a_usage_error(db: Database) -> None:
    result = pgwarden(db, "vacuum", "--threshold", "5")
    assert result.exit_code == 2 and "--threshold needs --auto" in result.output


def test_analyze_sets_last_analyze(db: Database) -> None:
    db.run("CREATE TABLE t (id int)", "CREATE TABLE u (id int)")
    result = pgwarden(db, "analyze", "--table", "t")
    assert result.exit_code == 0, result.output
    assert "analyze: 1 ok, 0 failed." in result.stdout
    assert db.stat("t", "last_analyze") is not None
    assert db.stat("u", "last_analyze") is None


def test_reindex_concurrently_rebuilds_and_plain_reindex_warns(db: Database) -> None:
    db.run("CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t SELECT generate_series(1, 100)")
    before = db.filenode("t_pkey")
    result = pgwarden(db, "--json", "reindex", "--index", "t_pkey", "--concurrently")
    assert result.exit_code == 0, result.output
    assert (
        report(result)["operations"][0]["statement"] == "REINDEX INDEX CONCURRENTLY public.t_pkey"
    )
    assert db.filenode("t_pkey") != before

    plain = pgwarden(db, "reindex", "--table", "t")
    assert plain.exit_code == 0, plain.output
    assert "warning: REINDEX without CONCURRENTLY blocks writes" in plain.stderr


def test_reindex_needs_something_to_rebuild(db: Database) -> None:
    result = pgwarden(db, "reindex", "--concurrently")
    assert result.exit_code == 2 and "--table, --index or --invalid" in result.output


def test_vacuum_shows_progress_as_json_lines(db: Database) -> None:
    # Slowed down to a pause after every page, the vacuum scans for minutes; progress
    # is read every half second, so wait until the CLI's watcher has finished a read
    # during the scan, then cancel the vacuum (which makes the exit code 1).
    db.run(
        "CREATE TABLE t (id int) WITH (autovacuum_enabled = false)",
        "INSERT INTO t SELECT generate_series(1, 100000)",
    )
    db.slow_vacuums()
    name = sa.make_url(db.url).database
    results: list[Result] = []
    watcher = (
        "SELECT query_start FROM pg_stat_activity WHERE datname = :d AND state = 'idle' "
        "AND query LIKE '%pg_stat_progress_vacuum%' AND pid <> pg_backend_pid()"
    )
    worker = threading.Thread(
        target=lambda: results.append(pgwarden(db, "--json", "vacuum", "--table", "t"))
    )
    worker.start()
    pid = db.wait_for(
        lambda: db.scalar(
            "SELECT pid FROM pg_stat_progress_vacuum WHERE relid = 't'::regclass "
            "AND phase = 'scanning heap'"
        )
    )
    seen = db.wait_for(lambda: db.scalar(watcher, d=name))
    db.wait_for(lambda: (last := db.scalar(watcher, d=name)) is not None and last != seen)
    db.cancel(pid)
    worker.join()
    [result] = results
    assert result.exit_code == 1, result.output
    events = [json.loads(line) for line in result.stderr.splitlines()]
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[-1]["command"] == "VACUUM" and progress[-1]["pid"] == pid
    assert progress[-1]["phase"] == "scanning heap"
    assert 0 <= progress[-1]["done"] <= progress[-1]["total"]
    assert progress[-1]["total"] == db.scalar(
        "SELECT pg_relation_size('t') / current_setting('block_size')::int"
    )
    assert events[-1]["event"] == "done" and events[-1]["status"] == "failed"
    assert report(result)["operations"][0]["status"] == "failed"


def test_a_bad_size_is_a_usage_error(db: Database) -> None:
    result = pgwarden(db, "vacuum", "--full", "--max-full-size", "lots")
    assert result.exit_code == 2 and "not a size such as 1GB" in result.output


@pytest.mark.parametrize("command", ["vacuum", "analyze", "reindex"])
def test_the_docs_cover_every_option(command: str) -> None:
    from pathlib import Path

    import pgwarden

    docs = Path(pgwarden.__file__).parents[2] / "docs"
    guide, reference = (docs / "maintenance.md").read_text(), (docs / "cli.md").read_text()
    assert f"`pgwarden {command} " in reference
    options = [
        opt for param in cli.commands[command].params for opt in param.opts if opt != "--help"
    ]
    assert options
    for option in options:
        assert option in guide, f"docs/maintenance.md does not mention {command} {option}"
