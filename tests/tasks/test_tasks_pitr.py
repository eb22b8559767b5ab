"""The PITR jobs: the archiving check and the restore drill, run as scheduled jobs."""

from __future__ import annotations

from pathlib import Path

from tasks_support import RecordingNotifier

from backup.pitr_support import archiving_cluster, install_for, scratch_dir
from pgwarden.backup.physical import create_base_backup
from pgwarden.backup.pitr_status import drill_records
from pgwarden.backup.storage import LocalStorage
from pgwarden.backup.wal import list_wal
from pgwarden.config import load_settings
from pgwarden.tasks import FleetConfig, catalogue, parse_fleet
from pgwarden.tasks.jobs import run_job
from pgwarden.testing.servers import TestServer


def _fleet(url: str, storage: Path, scratch: Path, catalogue_url: str) -> FleetConfig:
    table = {"url_env": "T_URL", "storage": str(storage), "pitr": {"scratch": str(scratch)}}
    return parse_fleet(
        {"tasks": {"catalogue_env": "C_URL"}, "targets": {"app": table}},
        environ={"T_URL": url, "C_URL": catalogue_url},
    )


def test_the_archiving_check_and_a_drill_run_as_jobs(
    pg_server: TestServer, catalogue_db: str, notifier: RecordingNotifier
) -> None:
    with scratch_dir("pgwarden-tasks-pitr-") as base:
        storage = LocalStorage(base / "storage")
        with archiving_cluster(base, storage, install_for(pg_server)) as source:
            create_base_backup(source.url, storage)
            fleet = _fleet(source.url, base / "storage", base / "drill", catalogue_db)
            assert fleet.target("app").schedule["pitr_drill"] != "off"
            settings = load_settings()
            check = run_job(fleet, settings, "app", "pitr_check", notifiers=[notifier])
            drill = run_job(fleet, settings, "app", "pitr_drill", notifiers=[notifier])
        assert check.status == "ok", check.error
        assert check.detail["segment"] in {item.name for item in list_wal(storage)}
        assert drill.status == "ok", drill.error
        [record] = drill_records(storage)
        assert record.ok and record.id == drill.detail["drill_id"]
        assert not any((base / "drill").iterdir())  # the scratch copy is gone
    with catalogue.catalogue(catalogue_db) as conn:
        recorded = {r.job: r.status for r in catalogue.runs(conn, target="app")}
    assert recorded == {"pitr_check": "ok", "pitr_drill": "ok"}
    assert notifier.alerts == []


def test_a_check_on_a_server_that_does_not_archive_fails_with_an_alert(
    target_db: str, catalogue_db: str, tmp_path: Path, notifier: RecordingNotifier
) -> None:
    fleet = _fleet(target_db, tmp_path / "storage", tmp_path / "drill", catalogue_db)
    outcome = run_job(fleet, load_settings(), "app", "pitr_check", notifiers=[notifier])
    assert outcome.status == "failed" and "archive_mode is off" in (outcome.error or "")
    assert notifier.keys() == [("app", "job:pitr_check", "open")]
