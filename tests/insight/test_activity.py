"""Session activity, against real sessions: sleeping, idle in a transaction, blocked."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pgwarden._sql import quote_identifier as quote
from pgwarden.errors import UserError
from pgwarden.insight.activity import (
    CHECKS,
    check_activity,
    idle_in_transaction,
    idle_transaction_findings,
    long_running_queries,
    long_running_query_findings,
    sessions,
)
from pgwarden.insight.blocking import BlockedQuery, blocked_queries, blocked_query_findings
from pgwarden.insight.connections import connection_findings, connection_usage
from pgwarden.insight.signals import cancel
from pgwarden.testing.servers import TestServer
from session_support import Sessions, wait_for


@pytest.fixture
def live(pg_url: str) -> Iterator[Sessions]:
    sessions = Sessions(pg_url)
    try:
        yield sessions
    finally:
        sessions.close()


@pytest.fixture
def login_role(pg_server: TestServer, pg_url: str) -> Iterator[tuple[str, str]]:
    """Yield a new ordinary login role and a URL of the test database that logs in as it."""
    name = f"worker_{secrets.token_hex(4)}"
    password = secrets.token_hex(8)
    with pg_server.admin.connect() as conn:
        conn.execute(sa.text(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'"))
    url = sa.make_url(pg_url).set(username=name, password=password)
    try:
        yield name, url.render_as_string(hide_password=False)
    finally:
        with pg_server.admin.connect() as conn:
            conn.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE usename = :name"), {"name": name},
            )  # fmt: skip
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {name}"))


def as_role(conn: Connection, role: str) -> None:
    conn.execute(sa.text(f"SET LOCAL ROLE {role}"))


def query_canceled(error: BaseException | None) -> bool:
    return isinstance(getattr(error, "orig", None), psycopg.errors.QueryCanceled)


# -- long-running queries


def test_a_sleeping_query_is_long_running(live: Sessions, monitor_role: str) -> None:
    sleeper, pid = live.open()
    sleeping = live.start(sleeper, "SELECT pg_sleep(30)")
    observer = live.observer()

    def running() -> list[int]:
        found = long_running_queries(observer, min_duration_s=0.2)
        return [s.pid for s in found if s.pid == pid]

    wait_for(running, "the sleep to run 0.2 s")
    with live.engine.connect() as conn, conn.begin():
        as_role(conn, monitor_role)
        [query] = [s for s in long_running_queries(conn, min_duration_s=0.2) if s.pid == pid]
        ours = {s.pid for s in long_running_queries(conn, min_duration_s=0)}
        own = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        too_long = {s.pid for s in long_running_queries(conn, min_duration_s=3600)}
        results = {r.check: r for r in check_activity(conn, long_running_s=0.2)}

    assert (query.state, query.application, query.backend_type) == (
        "active",
        live.application,
        "client backend",
    )
    assert query.query == "SELECT pg_sleep(30)"  # a pg_monitor member reads others' queries
    assert query.duration_s is not None and query.duration_s >= 0.2
    assert query.blocked_by == []
    assert pid in ours and pid not in too_long
    assert own not in ours
    [finding] = [f for f in results["long_running_queries"].findings if f.subject == f"pid {pid}"]
    assert finding.severity == "warning"
    assert finding.fix == f"SELECT pg_cancel_backend({pid});"
    assert "pg_sleep(30)" in finding.what
    [critical] = long_running_query_findings([query], critical_s=0)
    assert critical.severity == "critical"

    # The fix does what it says.
    observer.execute(sa.text(finding.fix))
    assert query_canceled(sleeping.exception(timeout=30))


# -- idle in transaction


def test_an_open_idle_transaction_is_found(live: Sessions, monitor_role: str) -> None:
    idle, pid = live.open()
    idle.execute(sa.text("SELECT 41 + 1"))  # begins a transaction, left open
    aborted, aborted_pid = live.open()
    with pytest.raises(sa.exc.DataError):
        aborted.execute(sa.text("SELECT 1 / 0"))
    observer = live.observer()
    wait_for(
        lambda: {pid} <= {s.pid for s in idle_in_transaction(observer, min_duration_s=0)},
        "the transaction to sit idle",
    )
    with live.engine.connect() as conn, conn.begin():
        as_role(conn, monitor_role)
        found = {s.pid: s for s in idle_in_transaction(conn, min_duration_s=0)}
        too_long = {s.pid for s in idle_in_transaction(conn, min_duration_s=3600)}
        listed = {s.pid: s for s in sessions(conn)}
        results = {r.check: r for r in check_activity(conn, idle_in_transaction_s=0)}
        role = conn.execute(sa.text("SELECT session_user")).scalar_one()

    session = found[pid]
    assert session.state == "idle in transaction"
    assert session.query == "SELECT 41 + 1"
    assert session.application == live.application and session.client
    assert session.xact_age_s is not None and session.duration_s is not None
    assert session.xact_age_s >= session.duration_s
    assert pid not in too_long
    # An aborted transaction holds no locks nor snapshot: listed, but not a finding.
    assert aborted_pid not in found
    assert listed[aborted_pid].state == "idle in transaction (aborted)"
    [finding] = [f for f in results["idle_in_transaction"].findings if f.subject == f"pid {pid}"]
    assert finding.fix == f"SELECT pg_terminate_backend({pid});"
    assert "idle_in_transaction_session_timeout" in finding.why
    assert f"ALTER ROLE {quote(role)} SET idle_in_transaction_session_timeout" in finding.why
    [critical] = idle_transaction_findings([session], critical_s=0)
    assert critical.severity == "critical"


# -- blocked queries


def test_a_chain_of_blocked_queries_leads_to_its_root(
    live: Sessions, run, monitor_role: str
) -> None:
    run(
        "CREATE TABLE account (id int PRIMARY KEY, balance int)",
        "INSERT INTO account VALUES (1, 0)",
    )
    holder, a = live.open()
    holder.execute(sa.text("UPDATE account SET balance = 1 WHERE id = 1"))  # and stays open
    first, b = live.open()
    second, c = live.open()
    first_update = live.start(first, "UPDATE account SET balance = 2 WHERE id = 1")
    observer = live.observer()

    def waiting(*pids: int) -> dict[int, BlockedQuery]:
        found = {q.pid: q for q in blocked_queries(observer)}
        return found if set(pids) <= set(found) else {}

    wait_for(lambda: waiting(b), "the first update to block")
    second_update = live.start(second, "UPDATE account SET balance = 3 WHERE id = 1")
    wait_for(lambda: waiting(b, c), "the second update to block")
    with live.engine.connect() as conn, conn.begin():
        as_role(conn, monitor_role)
        blocked = {q.pid: q for q in blocked_queries(conn) if q.pid in (b, c)}
        results = {r.check: r for r in check_activity(conn, blocked_s=0)}

    behind_holder, behind_first = blocked[b], blocked[c]
    assert behind_holder.blocked_by == [a] and behind_holder.root_pids == [a]
    assert behind_holder.depth == 1
    assert (behind_holder.waits_for or "").startswith("ShareLock on transaction ")
    assert behind_holder.query == "UPDATE account SET balance = 2 WHERE id = 1"
    assert behind_first.blocked_by == [b]
    assert [blocker.pid for blocker in behind_first.blockers] == [b, a]
    assert behind_first.root_pids == [a] and behind_first.depth == 2
    assert "a row of account" in (behind_first.waits_for or "")
    [root] = behind_first.roots
    assert root.state == "idle in transaction" and root.blocked_by == []
    assert root.query == "UPDATE account SET balance = 1 WHERE id = 1"
    assert root.xact_age_s is not None and root.application == live.application

    [finding] = blocked_query_findings([behind_holder, behind_first])
    assert finding.subject == f"pid {a}"
    assert "blocks 2 queries" in finding.what and "2 deep" in finding.what
    assert finding.fix == f"SELECT pg_terminate_backend({a});"  # idle: cancel would not help
    assert {q["pid"] for q in finding.details["blocked"]} == {b, c}
    [checked] = [f for f in results["blocked_queries"].findings if f.subject == f"pid {a}"]
    assert checked.fix == finding.fix and results["blocked_queries"].skipped is None

    # The fix frees the chain: the holder's transaction rolls back, both updates go through.
    ended = cancel(observer, a, terminate=True)
    assert (ended.delivered, ended.ended) == (True, True)
    assert first_update.result(timeout=30) == 1
    first.rollback()
    assert second_update.result(timeout=30) == 1
    second.rollback()


def test_a_running_root_is_cancelled_not_terminated(live: Sessions, run) -> None:
    run("CREATE TABLE job (id int PRIMARY KEY)")
    holder, a = live.open()
    holder.execute(sa.text("LOCK TABLE job IN ACCESS EXCLUSIVE MODE"))
    holding = live.start(holder, "SELECT pg_sleep(30)")
    reader, b = live.open()
    reading = live.start(reader, "SELECT count(*) FROM job")
    observer = live.observer()
    [blocked] = wait_for(
        lambda: [q for q in blocked_queries(observer) if q.pid == b], "the read to block"
    )

    assert blocked.waits_for == "AccessShareLock on table job"
    [finding] = blocked_query_findings([blocked])
    assert finding.fix == f"SELECT pg_cancel_backend({a});"
    assert [q.pid for q in blocked_queries(observer, min_wait_s=3600)] == []
    observer.execute(sa.text(finding.fix))
    assert query_canceled(holding.exception(timeout=30))
    holder.rollback()
    assert reading.result(timeout=30) == [(0,)]


# -- connections


def test_connections_are_counted_by_state_and_source(live: Sessions, monitor_role: str) -> None:
    open_sessions = [live.open()[0] for _ in range(3)]
    open_sessions[0].execute(sa.text("SELECT 1"))  # idle in transaction
    observer = live.observer()  # idle, in autocommit, when not reading
    with live.engine.connect() as conn, conn.begin():
        as_role(conn, monitor_role)
        usage = connection_usage(conn)
        results = {r.check: r for r in check_activity(conn, connections_warning=0.0)}
        max_connections, reserved = conn.execute(
            sa.text("SELECT current_setting('max_connections')::int, "
                    "current_setting('superuser_reserved_connections')::int "
                    "+ COALESCE(current_setting('reserved_connections', true)::int, 0)")
        ).one()  # fmt: skip
    observer.close()

    [source] = [s for s in usage.sources if s.application == live.application]
    # The three, the observer, and the reading session itself.
    assert source.connections == 5
    assert source.by_state == {"idle": 3, "idle in transaction": 1, "active": 1}
    assert usage.count_by("application")[live.application] == 5
    assert usage.by_state["active"] >= 1 and usage.connections >= 5
    assert (usage.max_connections, usage.reserved_connections) == (max_connections, reserved)
    assert usage.available == max_connections - reserved
    assert usage.fraction_used == usage.connections / usage.available

    [finding] = connection_findings(usage, warning=usage.fraction_used)
    assert finding.severity == "warning" and finding.fix is None
    assert f"{usage.connections} of {usage.available} connection slots" in finding.what
    assert finding.details["by_state"] == usage.by_state
    assert connection_findings(usage, warning=usage.fraction_used + 0.01) == []
    [critical] = connection_findings(usage, warning=0.0, critical=0.0)
    assert critical.severity == "critical"
    assert len(results["connection_usage"].findings) == 1
    assert {check.name: check.scope for check in CHECKS}["connection_usage"] == "cluster"


# -- the session listing


def test_sessions_lists_what_is_busy_unless_asked_for_everything(live: Sessions) -> None:
    sleeper, sleeping_pid = live.open()
    sleeping = live.start(sleeper, "SELECT pg_sleep(30)")
    in_transaction, open_pid = live.open()
    in_transaction.execute(sa.text("SELECT 1"))
    _, idle_pid = live.open()
    observer = live.observer()
    wait_for(lambda: sleeping_pid in {s.pid for s in sessions(observer, running=True)}, "the sleep")

    busy = {s.pid for s in sessions(observer)}
    running = {s.pid for s in sessions(observer, running=True)}
    everything = sessions(observer, everything=True)
    assert {sleeping_pid, open_pid} <= busy and idle_pid not in busy
    assert sleeping_pid in running and open_pid not in running
    assert {sleeping_pid, open_pid, idle_pid} <= {s.pid for s in everything}
    assert any(s.backend_type != "client backend" for s in everything)
    assert sleeping_pid not in {s.pid for s in sessions(observer, min_duration_s=3600)}
    observer.execute(sa.text(f"SELECT pg_cancel_backend({sleeping_pid})"))
    assert query_canceled(sleeping.exception(timeout=30))


# -- cancel and terminate


def test_cancel_stops_the_query_and_keeps_the_session(live: Sessions) -> None:
    sleeper, pid = live.open()
    sleeping = live.start(sleeper, "SELECT pg_sleep(30)")
    observer = live.observer()
    wait_for(lambda: pid in {s.pid for s in sessions(observer, running=True)}, "the sleep")

    plan = cancel(observer, pid, dry_run=True)
    assert (plan.dry_run, plan.delivered, plan.action) == (True, False, "cancel")
    assert plan.session.query == "SELECT pg_sleep(30)"
    assert plan.statement == f"SELECT pg_cancel_backend({pid});"
    assert sleeping.running()

    result = cancel(observer, pid)
    assert (result.delivered, result.ended) == (True, None)
    assert query_canceled(sleeping.exception(timeout=30))
    sleeper.rollback()
    assert sleeper.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() == pid


def test_refusals_say_why(live: Sessions) -> None:
    observer = live.observer()
    own = observer.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    with pytest.raises(UserError, match="pgwarden's own session"):
        cancel(observer, own)
    with pytest.raises(UserError, match="no session with pid 99999999") as unknown:
        cancel(observer, 99_999_999, dry_run=True)
    assert unknown.value.exit_code == 2
    checkpointer = observer.execute(
        sa.text("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
    ).scalar_one()
    with pytest.raises(UserError, match="is a checkpointer, not a client session"):
        cancel(observer, checkpointer, terminate=True)


def test_privileges_are_checked_before_anything_is_sent(
    live: Sessions, monitor_role: str, login_role: tuple[str, str], pg_server: TestServer
) -> None:
    role, url = login_role
    _, super_pid = live.open()
    worker, worker_pid = live.open(url)
    sleeping = live.start(worker, "SELECT pg_sleep(30)")
    observer = live.observer()
    wait_for(lambda: worker_pid in {s.pid for s in sessions(observer, running=True)}, "sleep")

    with live.engine.connect() as conn, conn.begin():
        as_role(conn, monitor_role)
        with pytest.raises(UserError, match="superuser") as on_super:
            cancel(conn, super_pid, dry_run=True)
        with pytest.raises(UserError, match=f"may not signal pid {worker_pid}") as on_other:
            cancel(conn, worker_pid, dry_run=True)
    assert "Only a superuser" in str(on_super.value.hint)
    bare_name = monitor_role.strip('"')
    grant = f"GRANT pg_signal_backend TO {bare_name};"
    assert grant in str(on_other.value.hint)
    assert sleeping.running()

    with pg_server.admin.connect() as admin:
        admin.execute(sa.text(f"GRANT pg_signal_backend TO {monitor_role}"))
    with live.engine.connect() as conn, conn.begin():
        as_role(conn, monitor_role)
        result = cancel(conn, worker_pid)
    assert result.delivered and result.session.user == role
    assert query_canceled(sleeping.exception(timeout=30))
