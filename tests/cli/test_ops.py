"""``pgwarden queries`` and ``pgwarden cancel``, against real sleeping and idle sessions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from pgwarden.cli.main import cli
from pgwarden.insight.activity import sessions
from session_support import Sessions, wait_for


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def live(pg_url: str) -> Iterator[Sessions]:
    sessions = Sessions(pg_url, prefix="pgwarden-ops")
    try:
        yield sessions
    finally:
        sessions.close()


def sleeping(live: Sessions) -> tuple[int, Future[Any]]:
    """Start a pg_sleep in a session of its own; return its pid once it runs, and its future."""
    conn, pid = live.open()
    future = live.start(conn, "SELECT pg_sleep(30)")
    observer = live.observer()
    wait_for(lambda: pid in {s.pid for s in sessions(observer, running=True)}, "the sleep")
    return pid, future


def still_there(live: Sessions, pid: int) -> bool:
    with live.engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = :pid)"),
            {"pid": pid},
        ).scalar_one()


def test_queries_lists_a_running_sleep(runner: CliRunner, pg_url: str, live: Sessions) -> None:
    pid, future = sleeping(live)
    _, idle_pid = live.open()

    result = runner.invoke(cli, ["--database-url", pg_url, "--json", "queries", "--running"])
    assert result.exit_code == 0, result.output
    listed = {entry["pid"]: entry for entry in json.loads(result.stdout)}
    entry = listed[pid]
    assert entry["query"] == "SELECT pg_sleep(30)"
    assert (entry["state"], entry["application"]) == ("active", live.application)
    assert entry["blocked_by"] == [] and entry["duration_s"] >= 0
    assert idle_pid not in listed

    everything = runner.invoke(cli, ["--database-url", pg_url, "--json", "queries", "--all"])
    assert idle_pid in {entry["pid"] for entry in json.loads(everything.stdout)}

    table = runner.invoke(
        cli, ["--database-url", pg_url, "queries", "--min-duration", "0"], env={"COLUMNS": "200"}
    )
    assert table.exit_code == 0, table.output
    assert str(pid) in table.stdout and "pg_sleep" in table.stdout
    assert not future.done()


def test_cancel_cancels_the_query(runner: CliRunner, pg_url: str, live: Sessions) -> None:
    pid, future = sleeping(live)

    result = runner.invoke(cli, ["--database-url", pg_url, "--json", "cancel", str(pid)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["action"], report["delivered"], report["dry_run"]) == ("cancel", True, False)
    assert report["session"]["query"] == "SELECT pg_sleep(30)"
    error = future.exception(timeout=30)
    assert isinstance(getattr(error, "orig", None), psycopg.errors.QueryCanceled)
    assert still_there(live, pid)  # the session stays, only its query stopped


def test_terminate_ends_the_session(runner: CliRunner, pg_url: str, live: Sessions) -> None:
    conn, pid = live.open()
    conn.execute(sa.text("SELECT 1"))  # idle in a transaction

    result = runner.invoke(cli, ["--database-url", pg_url, "cancel", str(pid), "--terminate"])
    assert result.exit_code == 0, result.output
    assert f"session {pid} has ended" in result.stdout
    assert not still_there(live, pid)
    with pytest.raises(sa.exc.OperationalError):
        conn.execute(sa.text("SELECT 1"))


def test_dry_run_leaves_the_query_running(runner: CliRunner, pg_url: str, live: Sessions) -> None:
    pid, future = sleeping(live)

    result = runner.invoke(
        cli, ["--database-url", pg_url, "cancel", str(pid), "--terminate", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert f"Would end the session of pid {pid}" in result.stdout
    assert "SELECT pg_sleep(30)" in result.stdout
    assert f"SELECT pg_terminate_backend({pid});" in result.stdout
    observer = live.observer()
    assert pid in {s.pid for s in sessions(observer, running=True)}
    assert not future.done()


def test_unknown_pid_is_a_user_error(runner: CliRunner, pg_url: str) -> None:
    result = runner.invoke(cli, ["--database-url", pg_url, "--json", "cancel", "99999999"])
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "UserError"
    assert error["message"] == "no session with pid 99999999 on this server."
    assert "pgwarden queries --all" in error["hint"]


def test_server_processes_are_refused(runner: CliRunner, pg_url: str, live: Sessions) -> None:
    with live.engine.connect() as conn:
        checkpointer = conn.execute(
            sa.text("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
        ).scalar_one()

    result = runner.invoke(cli, ["--database-url", pg_url, "cancel", str(checkpointer)])
    assert result.exit_code == 2
    assert "is a checkpointer, not a client session" in result.stderr
    assert "hint:" in result.stderr
