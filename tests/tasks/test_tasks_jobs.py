"""run_job: each kind of job on a real database, recorded in the catalogue, with alerts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa
from tasks_support import RecordingNotifier, engine, scalar

from pgwarden.backup import list_backups, open_storage
from pgwarden.config import load_settings
from pgwarden.tasks import FleetConfig, catalogue, parse_fleet
from pgwarden.tasks.incidents import check_overdue
from pgwarden.tasks.jobs import run_job
from pgwarden.testing.servers import free_port


def _fleet(
    url: str, storage: Path, catalogue_url: str | None = None, **target: object
) -> FleetConfig:
    env = {"T_URL": url, "C_URL": catalogue_url or ""}
    tasks = {"catalogue_env": "C_URL"} if catalogue_url else {}
    table = {"url_env": "T_URL", "storage": str(storage), **target}
    return parse_fleet({"tasks": tasks, "targets": {"app": table}}, environ=env)


def test_every_job_runs_and_is_recorded(
    target_db: str, catalogue_db: str, tmp_path: Path, notifier: RecordingNotifier
) -> None:
    fleet = _fleet(
        target_db,
        tmp_path / "storage",
        catalogue_db,
        windows=["00:00-23:59"],
        schedule={"vacuum": "0 * * * *"},
        thresholds={"unused_indexes": {"min_size_bytes": 0}},
    )
    settings = load_settings()
    outcomes = {
        job: run_job(fleet, settings, "app", job, notifiers=[notifier])
        for job in ("backup", "verify", "expire", "snapshot", "doctor", "vacuum")
    }
    assert {job: o.status for job, o in outcomes.items()} == dict.fromkeys(outcomes, "ok"), [
        o.error for o in outcomes.values()
    ]
    # The library's own results: a complete, verified backup; a stored snapshot.
    storage = open_storage(str(tmp_path / "storage"))
    [backup] = list_backups(storage)
    assert backup.complete and backup.id == outcomes["backup"].detail["backup_id"]
    assert backup.verification is not None and backup.verification.ok
    assert outcomes["verify"].detail["backup_id"] == backup.id
    assert scalar(target_db, "SELECT count(*) FROM pgwarden.insight_snapshot") == 1
    # Recorded in the catalogue database, not in the target.
    with catalogue.catalogue(catalogue_db) as conn:
        recorded = catalogue.runs(conn, target="app")
    assert sorted(r.job for r in recorded) == sorted(outcomes)
    assert all(r.status == "ok" and r.duration_s is not None for r in recorded)
    assert scalar(target_db, "SELECT to_regclass('pgwarden.task_run') IS NULL") is True
    assert notifier.alerts == []


def test_a_job_held_by_another_worker_is_skipped(
    target_db: str, tmp_path: Path, notifier: RecordingNotifier
) -> None:
    fleet = _fleet(target_db, tmp_path / "storage")
    holder = engine(target_db).connect()
    try:
        holder.execute(
            sa.text("SELECT pg_advisory_lock(hashtext('pgwarden.tasks'), hashtext('snapshot'))")
        )
        outcome = run_job(fleet, load_settings(), "app", "snapshot", notifiers=[notifier])
        assert outcome.status == "skipped" and "another worker" in (outcome.error or "")
    finally:
        holder.close()  # the lock goes with the session, as with a worker that died
    assert run_job(fleet, load_settings(), "app", "snapshot").status == "ok"
    # Without a catalogue database the runs are recorded in the target itself.
    with catalogue.catalogue(target_db) as conn:
        assert [r.status for r in catalogue.runs(conn, target="app")] == ["ok", "skipped"]


def test_vacuum_waits_for_its_window(target_db: str, tmp_path: Path) -> None:
    fleet = _fleet(
        target_db, tmp_path / "s", windows=["Sun 01:00-02:00"], schedule={"vacuum": "0 * * * *"}
    )
    monday = dt.datetime(2026, 12, 7, 1, 30, tzinfo=dt.UTC)
    outcome = run_job(fleet, load_settings(), "app", "vacuum", scheduled_for=monday)
    assert outcome.status == "skipped" and "outside the maintenance windows" in (
        outcome.error or ""
    )
    sunday = dt.datetime(2026, 12, 6, 1, 30, tzinfo=dt.UTC)
    assert run_job(fleet, load_settings(), "app", "vacuum", scheduled_for=sunday).status == "ok"


def test_an_unreachable_target_alerts_once_and_recovers_once(
    target_db: str, catalogue_db: str, tmp_path: Path, notifier: RecordingNotifier
) -> None:
    # A password in the URL, even where the server trusts without one, must stay out.
    password = sa.make_url(target_db).password or "a-password-for-the-test"
    down = sa.make_url(target_db).set(port=free_port(), password=password)
    settings = load_settings()
    fleet = _fleet(down.render_as_string(hide_password=False), tmp_path / "s", catalogue_db)
    for job in ("snapshot", "doctor", "snapshot"):
        outcome = run_job(fleet, settings, "app", job, notifiers=[notifier])
        assert outcome.status == "failed" and outcome.retry
        assert outcome.error_type == "ConnectionFailed"
    assert notifier.keys() == [("app", "unreachable", "open")]
    assert "cannot be reached" in notifier.alerts[0].message
    assert all(password not in a.message for a in notifier.alerts)
    fleet = _fleet(target_db, tmp_path / "s", catalogue_db)  # back up
    assert run_job(fleet, settings, "app", "snapshot", notifiers=[notifier]).status == "ok"
    assert run_job(fleet, settings, "app", "doctor", notifiers=[notifier]).status == "ok"
    assert notifier.keys() == [("app", "unreachable", "open"), ("app", "unreachable", "recovered")]


def test_a_failed_backup_alerts_only_on_its_last_attempt(
    target_db: str, catalogue_db: str, tmp_path: Path, notifier: RecordingNotifier
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    fleet = _fleet(target_db, blocked / "storage", catalogue_db)
    settings = load_settings()
    first = run_job(fleet, settings, "app", "backup", final=False, notifiers=[notifier])
    assert first.status == "failed" and notifier.alerts == []
    run_job(fleet, settings, "app", "backup", final=True, notifiers=[notifier])
    run_job(fleet, settings, "app", "backup", final=True, notifiers=[notifier])
    assert notifier.keys() == [("app", "job:backup", "open")]
    assert notifier.alerts[0].message.startswith("backup failed on app")
    fleet = _fleet(target_db, tmp_path / "storage", catalogue_db)
    assert run_job(fleet, settings, "app", "backup", notifiers=[notifier]).status == "ok"
    assert notifier.keys()[-1] == ("app", "job:backup", "recovered")


def test_a_new_critical_finding_alerts_once(
    target_db: str, catalogue_db: str, tmp_path: Path, notifier: RecordingNotifier
) -> None:
    with engine(target_db).begin() as conn:
        conn.execute(sa.text("CREATE SEQUENCE nearly_done MAXVALUE 100"))
        conn.execute(sa.text("SELECT setval('nearly_done', 99)"))
        conn.execute(sa.text("CREATE TABLE numbered (id int DEFAULT nextval('nearly_done'))"))
    fleet = _fleet(target_db, tmp_path / "s", catalogue_db)
    for _ in range(2):
        assert run_job(fleet, load_settings(), "app", "doctor", notifiers=[notifier]).status == "ok"
    opened = [a for a in notifier.alerts if a.kind == "finding"]
    assert len(opened) >= 1 and all(a.state == "open" for a in opened)
    assert len({a.key for a in opened}) == len(opened)
    with engine(target_db).begin() as conn:
        conn.execute(sa.text("DROP TABLE numbered"))
        conn.execute(sa.text("DROP SEQUENCE nearly_done"))
    run_job(fleet, load_settings(), "app", "doctor", notifiers=[notifier])
    recovered = [a for a in notifier.alerts if a.state == "recovered"]
    assert sorted(a.key for a in recovered) == sorted(a.key for a in opened)


def test_a_job_that_stops_succeeding_is_overdue(
    target_db: str, catalogue_db: str, tmp_path: Path, notifier: RecordingNotifier
) -> None:
    fleet = _fleet(target_db, tmp_path / "s", catalogue_db, schedule={"snapshot": "0 * * * *"})
    then = dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)
    run_job(fleet, load_settings(), "app", "snapshot", scheduled_for=then)
    assert check_overdue(fleet, then + dt.timedelta(minutes=90), notifiers=[notifier]) == []
    late = then + dt.timedelta(hours=3)
    assert check_overdue(fleet, late, notifiers=[notifier]) == ["open overdue:snapshot"]
    assert check_overdue(fleet, late, notifiers=[notifier]) == []  # once per incident
    run_job(fleet, load_settings(), "app", "snapshot", scheduled_for=late, notifiers=[notifier])
    assert notifier.keys()[-1] == ("app", "overdue:snapshot", "recovered")


def test_kept_connections_let_go_of_the_lock(target_db: str, tmp_path: Path) -> None:
    env = {"T_URL": target_db}
    fleet = parse_fleet(
        {"tasks": {"keep_connections": True}, "targets": {"app": {"url_env": "T_URL"}}},
        environ=env,
    )
    outcomes = [run_job(fleet, load_settings(), "app", "snapshot") for _ in range(3)]
    assert [o.status for o in outcomes] == ["ok", "ok", "ok"]
    # The pooled connection is idle and holds no advisory lock between jobs.
    held = scalar(target_db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
    assert held == 0
