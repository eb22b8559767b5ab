"""A worker killed with SIGKILL in the middle of a backup: the backup runs again, and succeeds.

The backup is held mid-dump by a lock the test takes on its table, so the kill (of the
whole worker, all its processes) lands while pg_dump runs. Then: no backup of the killed
run is listed complete, the task runs again on the other worker (where the broker hands
over the message of a dead worker, or, with PostgreSQL as the broker, where the other
worker sends it again once the run's heartbeat stopped), and neither the storage lock
nor the advisory lock left behind blocks it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from fleet_support import Fleet, broker_for, queue_name, running_fleet
from tasks_support import engine

from pgwarden.backup import list_backups, open_storage, read_lock
from pgwarden.backup.manifest import storage_name
from pgwarden.tasks.app import create_app
from pgwarden.testing.servers import TestServer

pytestmark = pytest.mark.slow


def _ready(fleet: Fleet, name: str) -> bool:
    return "ready." in (fleet.directory / f"{name}.log").read_text(errors="replace")


@pytest.mark.parametrize("broker_kind", ["postgresql", "redis", "amqp"])
def test_a_backup_whose_worker_is_killed_runs_again_and_succeeds(
    broker_kind: str,
    pg_server: TestServer,
    target_db: str,
    catalogue_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {"FLEET_CATALOGUE_URL": catalogue_db, "URL_APP": target_db}
    broker = broker_for(broker_kind, pg_server, env)
    storage_dir = tmp_path / "storage"
    config = "\n".join(
        [
            "[tasks]",
            broker,
            f'queue = "{queue_name()}"',
            'catalogue_env = "FLEET_CATALOGUE_URL"',
            "retries = 2",
            'retry_backoff = "1s"',
            'heartbeat = "1s"',  # a PostgreSQL broker: sent again 5 s after the beats stop
            'lost_after = "5s"',
            "[targets.app]",
            'url_env = "URL_APP"',
            f'storage = "{storage_dir}"',
        ]
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    storage = open_storage(str(storage_dir))
    blocker = engine(target_db).connect()
    with running_fleet(tmp_path, env, catalogue_db) as fleet:
        fleet.write(config + "\n")
        fleet.worker("wa")
        fleet.wait(lambda: _ready(fleet, "wa"), timeout=120, why="worker wa to start")
        blocker.execute(sa.text('LOCK TABLE "select" IN ACCESS EXCLUSIVE MODE'))
        app = create_app(fleet.config)
        task_id = app.send_task("backup.create", args=["app"]).id

        def running() -> bool:
            return any(r.status == "running" for r in fleet.runs(job="backup"))

        fleet.wait(running, timeout=120, why="the backup to start on wa")
        fleet.wait(
            lambda: any(not b.complete for b in list_backups(storage)),
            timeout=120,
            why="the backup to write its first object",
        )
        killed = next(b for b in list_backups(storage) if not b.complete)
        assert read_lock(storage, storage_name(killed.database)) is not None
        fleet.worker("wb")
        fleet.wait(lambda: _ready(fleet, "wb"), timeout=120, why="worker wb to start")
        # The whole worker, main process and pool: on Redis and RabbitMQ the broker hands
        # the message to wb; on PostgreSQL, whose transport deleted it, wb sends the job
        # again once the run's heartbeat has stopped.
        fleet.kill("wa")
        blocker.rollback()  # let the dumps go: the killed one has no reader left

        def succeeded() -> list[object]:
            return [r for r in fleet.runs(job="backup") if r.status == "ok"]

        fleet.wait(succeeded, timeout=300, why="the backup to run again and succeed")
        runs = fleet.runs(job="backup")
    blocker.close()
    [ok] = [r for r in runs if r.status == "ok"]
    assert ok.task_id == task_id
    lost = [r for r in runs if r.status == "lost"]
    assert [r.task_id for r in lost] == [task_id] and lost[0].worker == "wa@fleet"
    assert ok.worker == "wb@fleet"
    # Storage: the killed run's backup is not complete, the rerun's is.
    entries = {b.id: b for b in list_backups(storage)}
    assert not entries[killed.id].complete
    complete = [b for b in entries.values() if b.complete]
    assert [b.id for b in complete] == [ok.detail["backup_id"]] != [killed.id]
    assert read_lock(storage, storage_name(killed.database)) is None
