"""Jobs whose whole worker died are claimed once and sent again (a PostgreSQL broker)."""

from __future__ import annotations

import sqlalchemy as sa

from pgwarden.tasks import catalogue, parse_fleet
from pgwarden.tasks.catalogue import JobRun
from pgwarden.tasks.recovery import needs_recovery, recover_lost_runs


def test_a_silent_run_is_claimed_once_and_sent_again(catalogue_db: str) -> None:
    fleet = parse_fleet(
        {
            "tasks": {"broker_env": "B", "catalogue_env": "C", "lost_after": "30s"},
            "targets": {"app": {"url_env": "C"}},
        },
        environ={"B": catalogue_db, "C": catalogue_db},
    )
    assert needs_recovery(fleet)
    with catalogue.catalogue(catalogue_db) as conn:
        silent = catalogue.start_run(conn, target="app", job="backup", task_id="t-silent")
        alive = catalogue.start_run(conn, target="app", job="doctor", task_id="t-alive")
        untracked = catalogue.start_run(conn, target="app", job="snapshot")  # no task id
        with conn.begin():
            conn.execute(
                sa.text(
                    "UPDATE pgwarden.task_run SET started_at = now() - interval '5 minutes',"
                    " heartbeat_at = now() - interval '2 minutes' WHERE id IN (:a, :b)"
                ),
                {"a": silent, "b": untracked},
            )
        catalogue.heartbeat(conn, alive)
    sent: list[JobRun] = []
    assert [r.task_id for r in recover_lost_runs(fleet, sent.append)] == ["t-silent"]
    assert [(r.job, r.target, r.task_id) for r in sent] == [("backup", "app", "t-silent")]
    assert recover_lost_runs(fleet, sent.append) == []  # claimed once
    with catalogue.catalogue(catalogue_db) as conn:
        status = {r.id: r.status for r in catalogue.runs(conn, target="app")}
    assert status == {silent: "lost", alive: "running", untracked: "running"}


def test_brokers_that_redeliver_need_no_recovery() -> None:
    for broker in ("redis://127.0.0.1:6379/0", "amqp://guest@127.0.0.1:5672//"):
        fleet = parse_fleet({"tasks": {"broker": broker}}, environ={})
        assert not needs_recovery(fleet)
