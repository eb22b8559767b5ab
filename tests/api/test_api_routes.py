"""The routes against a real database: what they answer, and what their jobs do."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from api_support import auth
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from pgwarden.api import create_app
from pgwarden.config import Settings

PREFIX = "/v1/database"


def _engine(url: str) -> Any:
    return create_engine(make_url(url).set(drivername="postgresql+psycopg"))


def _finished(client: Any, job: dict[str, Any], token: str) -> dict[str, Any]:
    client.app.state.runtime.jobs.wait(300)
    answer = client.get(f"{PREFIX}/jobs/{job['id']}", headers=auth(token))
    assert answer.status_code == 200
    result: dict[str, Any] = answer.json()
    return result


@pytest.fixture
def orders(pg_url: str) -> list[tuple[Any, ...]]:
    """Fill a table with a hostile name and return its rows."""
    engine = _engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text('CREATE TABLE "Mixed ""Case""" (id int PRIMARY KEY, note text)'))
        conn.execute(
            text(
                'INSERT INTO "Mixed ""Case""" SELECT g, md5(g::text) FROM generate_series(1, 500) g'
            )
        )
        rows = conn.execute(text('SELECT * FROM "Mixed ""Case""" ORDER BY id')).all()
    engine.dispose()
    return [tuple(row) for row in rows]


def test_a_backup_made_through_the_api_restores_into_a_new_database(
    client: Any, tokens: dict[str, str], orders: list[tuple[Any, ...]], pg_url: str
) -> None:
    admin = tokens["admin"]
    started = client.post(f"{PREFIX}/backups", headers=auth(admin))
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "running"
    job = _finished(client, started.json(), admin)
    assert job["status"] == "succeeded", job
    assert job["progress"]["done"] > 0
    backup_id = job["result"]["backup_id"]
    listed = client.get(f"{PREFIX}/backups", headers=auth(tokens["read"])).json()
    assert [entry["id"] for entry in listed] == [backup_id]
    assert listed[0]["status"] == "complete"

    restored_name = f"restored_{backup_id[-4:]}"
    restore = client.post(
        f"{PREFIX}/backups/{backup_id}/restore",
        json={"database": restored_name},
        headers=auth(admin),
    )
    assert restore.status_code == 202, restore.text
    assert _finished(client, restore.json(), admin)["status"] == "succeeded"
    target = _engine(make_url(pg_url).set(database=restored_name).render_as_string(False))
    try:
        with target.connect() as conn:
            rows = conn.execute(text('SELECT * FROM "Mixed ""Case""" ORDER BY id')).all()
        assert [tuple(row) for row in rows] == orders
    finally:
        target.dispose()
        admin_engine = _engine(pg_url)
        with admin_engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(text(f'DROP DATABASE IF EXISTS "{restored_name}" WITH (FORCE)'))
        admin_engine.dispose()

    again = client.post(
        f"{PREFIX}/backups/{backup_id}/restore",
        json={"database": "postgres"},
        headers=auth(admin),
    )
    failed = _finished(client, again.json(), admin)
    assert failed["status"] == "failed" and "exists already" in failed["error"]

    verify = client.post(f"{PREFIX}/backups/{backup_id}/verify", headers=auth(admin))
    assert verify.status_code == 202
    verified = _finished(client, verify.json(), admin)
    assert verified["status"] == "succeeded", verified
    assert verified["result"]["ok"] is True
    entry = client.get(f"{PREFIX}/backups/{backup_id}", headers=auth(admin)).json()
    assert entry["verified_at"] is not None


def test_an_unknown_backup_or_job_is_404_in_the_error_shape(
    client: Any, tokens: dict[str, str]
) -> None:
    missing = client.get(f"{PREFIX}/backups/20260101T000000Z-abcd", headers=auth(tokens["read"]))
    assert missing.status_code == 404
    assert set(missing.json()["error"]) == {"type", "message", "hint"}
    assert client.get(f"{PREFIX}/jobs/nope", headers=auth(tokens["read"])).status_code == 404
    restore = client.post(
        f"{PREFIX}/backups/20260101T000000Z-abcd/restore",
        json={"database": "x"},
        headers=auth(tokens["admin"]),
    )
    assert restore.status_code == 404


def test_cancel_and_terminate_reach_a_real_session(
    client: Any, tokens: dict[str, str], pg_url: str
) -> None:
    engine = _engine(pg_url)
    conn = engine.connect()
    pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    conn.commit()
    errors: list[Exception] = []

    def sleep() -> None:
        try:
            conn.execute(text("SELECT pg_sleep(60)"))
        except Exception as error:
            errors.append(error)

    worker = threading.Thread(target=sleep)
    worker.start()
    try:
        operate = auth(tokens["operate"])
        for _ in range(100):
            running = client.get(f"{PREFIX}/sessions?running=true", headers=operate).json()
            if any(s["pid"] == pid for s in running):
                break
            time.sleep(0.05)
        dry = client.post(
            f"{PREFIX}/sessions/{pid}/cancel", json={"dry_run": True}, headers=operate
        )
        assert dry.status_code == 200 and dry.json()["delivered"] is False
        answer = client.post(f"{PREFIX}/sessions/{pid}/cancel", headers=operate)
        assert answer.status_code == 200, answer.text
        assert answer.json()["delivered"] is True
        worker.join(30)
        assert errors and "canceling statement" in str(errors[0])
        conn.rollback()
        ended = client.post(f"{PREFIX}/sessions/{pid}/terminate", headers=operate)
        assert ended.status_code == 200 and ended.json()["ended"] is True
    finally:
        worker.join(30)
        conn.invalidate()
        engine.dispose()


def test_the_summary_is_served_from_a_short_cache(client: Any, tokens: dict[str, str]) -> None:
    read = auth(tokens["read"])
    first = client.get(f"{PREFIX}/summary", headers=read).json()
    second = client.get(f"{PREFIX}/summary", headers=read).json()
    assert first["checked_at"] == second["checked_at"]
    assert first["checks_run"] > 10
    findings = client.get(f"{PREFIX}/findings?severity=warning", headers=read).json()
    assert all(f["severity"] in ("warning", "critical") for f in findings)
    assert sum(first["counts"][s] for s in ("warning", "critical")) == len(findings)


def test_snapshots_feed_history_and_growth(
    client: Any, tokens: dict[str, str], orders: list[tuple[Any, ...]], pg_url: str
) -> None:
    operate = auth(tokens["operate"])
    assert client.get(f"{PREFIX}/space/growth", headers=operate).status_code == 409
    first = client.post(f"{PREFIX}/space/snapshots", headers=operate)
    assert first.status_code == 201, first.text
    engine = _engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text('INSERT INTO "Mixed ""Case""" SELECT g, repeat(\'x\', 500) '
                          "FROM generate_series(501, 5000) g"))  # fmt: skip
    engine.dispose()
    assert client.post(f"{PREFIX}/space/snapshots", headers=operate).status_code == 201
    series = client.get(f"{PREFIX}/space/history", headers=operate).json()["snapshots"]
    assert len(series) == 2 and series[0]["id"] < series[1]["id"]
    assert series[1]["figures"]["database_bytes"] > 0
    grown = client.get(f"{PREFIX}/space/growth", headers=operate).json()
    assert any(g["name"] == 'Mixed "Case"' and g["delta_bytes"] > 0 for g in grown)


def test_a_maintenance_run_is_a_job(
    client: Any, tokens: dict[str, str], orders: list[tuple[Any, ...]]
) -> None:
    operate = tokens["operate"]
    body = {"command": "vacuum", "tables": ['"Mixed ""Case"""'], "analyze": True}
    plan = client.post(f"{PREFIX}/maintenance/plan", json=body, headers=auth(operate)).json()
    assert plan["statements"][-1] == 'VACUUM (ANALYZE) public."Mixed ""Case"""'
    started = client.post(f"{PREFIX}/maintenance/run", json=body, headers=auth(operate))
    assert started.status_code == 202
    job = _finished(client, started.json(), operate)
    assert job["status"] == "succeeded", job
    assert [op["status"] for op in job["result"]["operations"]] == ["ok"]
    unknown = client.post(
        f"{PREFIX}/maintenance/plan", json={"tables": ["no_such_table"]}, headers=auth(operate)
    )
    assert unknown.status_code == 400 and "no_such_table" in unknown.json()["error"]["message"]


def test_readiness_says_unavailable_when_the_database_is_down(tmp_path: Any) -> None:
    from fastapi.testclient import TestClient

    settings = Settings(database_url="postgresql://app:s3cret@127.0.0.1:1/app", connect_timeout=1)
    with TestClient(create_app(settings)) as client:
        answer = client.get(f"{PREFIX}/health/ready")
        assert answer.status_code == 503
        assert answer.json()["status"] == "unavailable"
        assert "s3cret" not in answer.text
        assert client.get(f"{PREFIX}/health").status_code == 200


def test_the_prefix_is_configurable(make_client: Any, tokens: dict[str, str]) -> None:
    client = make_client(prefix="/admin/db")
    assert client.get("/admin/db/health").status_code == 200
    assert client.get(f"{PREFIX}/health").status_code == 404
    paths = client.app.openapi()["paths"]
    assert all(path.startswith("/admin/db/") for path in paths)


def test_a_slow_database_does_not_block_other_requests(
    served: tuple[str, Any], tokens: dict[str, str], pg_url: str, orders: list[tuple[Any, ...]]
) -> None:
    import httpx

    base = served[0] + PREFIX
    engine = _engine(pg_url)
    holder = engine.connect()
    holder.execute(text('LOCK TABLE "Mixed ""Case""" IN ACCESS EXCLUSIVE MODE'))
    answers: list[int] = []

    def slow() -> None:  # sizing the locked table waits for the lock
        answers.append(
            httpx.get(f"{base}/space/tables", headers=auth(tokens["read"]), timeout=60).status_code
        )

    waiting = threading.Thread(target=slow)
    waiting.start()
    try:
        for _ in range(200):  # until the server's query waits for the lock
            with engine.connect() as conn:
                if conn.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND application_name = 'pgwarden-api'"
                )).scalar_one():  # fmt: skip
                    break
            time.sleep(0.05)
        else:
            pytest.fail("the sizing query never waited for the lock")
        health = httpx.get(f"{base}/health", timeout=10)
        summary = httpx.get(f"{base}/connections", headers=auth(tokens["read"]), timeout=30)
        assert health.status_code == 200 and summary.status_code == 200
        assert waiting.is_alive() and answers == []  # still waiting, yet others answered
    finally:
        holder.rollback()
        holder.close()
        waiting.join(60)
        engine.dispose()
    assert answers == [200]
