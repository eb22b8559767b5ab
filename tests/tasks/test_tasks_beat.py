"""Beat follows the config file as it changes; a job past its time limit is stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from fleet_support import Webhook, broker_for, queue_name, running_fleet
from tasks_support import engine

from pgwarden.tasks.app import create_app
from pgwarden.testing.servers import TestServer

pytestmark = pytest.mark.slow

ONLY_SNAPSHOTS = """
[targets.{name}.schedule]
snapshot = "*/10 * * * *"
backup = "off"
verify = "off"
expire = "off"
doctor = "off"
"""


def _tasks(broker: str, extra: str = "") -> str:
    return (
        f'[tasks]\n{broker}\nqueue = "{queue_name()}"\ncatalogue_env = "CAT_URL"\n'
        f'clock_speed = 120\ndeadman = "off"\nreload_every = "1s"\n{extra}'
    )


def _target(name: str, variable: str) -> str:
    return f'[targets.{name}]\nurl_env = "{variable}"\n' + ONLY_SNAPSHOTS.format(name=name)


def test_beat_schedules_a_target_added_to_the_config(
    pg_server: TestServer, target_db: str, catalogue_db: str, tmp_path: Path
) -> None:
    second = pg_server.create_database()
    env = {"CAT_URL": catalogue_db, "FIRST_URL": target_db, "SECOND_URL": pg_server.url(second)}
    broker = broker_for("postgresql", pg_server, env)
    with running_fleet(tmp_path, env, catalogue_db) as fleet:
        fleet.write(_tasks(broker) + _target("first", "FIRST_URL"))
        fleet.worker("wa")
        fleet.start("beat", "beat")
        fleet.wait(lambda: fleet.runs(target="first"), timeout=180, why="a snapshot of first")
        assert fleet.runs(target="second") == []
        fleet.write(
            _tasks(broker) + _target("first", "FIRST_URL") + _target("second", "SECOND_URL")
        )
        fleet.wait(
            lambda: any(r.status == "ok" for r in fleet.runs(target="second")),
            timeout=180,
            why="a snapshot of the target added to the config",
        )
    pg_server.drop_database(second)


def test_a_job_past_its_time_limit_is_stopped_and_alerts(
    pg_server: TestServer,
    target_db: str,
    catalogue_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {"CAT_URL": catalogue_db, "APP_URL": target_db}
    broker = broker_for("postgresql", pg_server, env)
    webhook = Webhook()
    config = (
        _tasks(broker, '[tasks.time_limits]\nbackup = "3s"\n')
        + f'[alerts]\nwebhook_url = "{webhook.url}"\n'
        + f'[targets.app]\nurl_env = "APP_URL"\nstorage = "{tmp_path / "storage"}"\n'
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    blocker = engine(target_db).connect()
    try:
        with running_fleet(tmp_path, env, catalogue_db) as fleet:
            fleet.write(config)
            fleet.worker("wa")
            # The dump waits for this lock for ever: only the time limit ends it.
            blocker.execute(sa.text('LOCK TABLE "select" IN ACCESS EXCLUSIVE MODE'))
            create_app(fleet.config).send_task("backup.create", args=["app"])
            fleet.wait(
                lambda: any(r.status == "failed" for r in fleet.runs(job="backup")),
                timeout=180,
                why="the backup to be stopped at its time limit",
            )
            fleet.wait(lambda: webhook.received, timeout=60, why="the alert")
            [run] = fleet.runs(job="backup")
    finally:
        blocker.close()
        webhook.close()
    assert "ran past its time limit" in (run.error or "")
    assert [(a["key"], a["state"]) for a in webhook.received] == [("job:backup", "open")]
