"""The migration routes against a real database and learnhub's migrations: status and
history, the upgrade's SQL, an upgrade job after a backup, scopes, and no config."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from api_support import auth
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from pgwarden.api import audit_entries, create_app
from pgwarden.backup import list_backups
from pgwarden.backup.storage import open_storage
from pgwarden.config import Settings
from schema_support import LEARNHUB_INI

pytest.importorskip("alembic")
pytestmark = pytest.mark.usefixtures("learnhub_app_role")

PREFIX = "/v1/database"
ROUTES = [
    ("GET", "/migrations"),
    ("GET", "/migrations/history"),
    ("POST", "/migrations/plan"),
    ("POST", "/migrations/upgrade"),
]


@pytest.fixture
def api_settings(pg_url: str, tmp_path: Path) -> Settings:
    """Return settings naming a fresh database, a backup directory and learnhub's migrations."""
    return Settings(
        database_url=pg_url, backup_storage=str(tmp_path / "backups"), alembic_config=LEARNHUB_INI
    )


def _execute(url: str, sql: str) -> list[Any]:
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql))
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def _revisions(answer: list[dict[str, Any]]) -> list[tuple[str, bool | None]]:
    return [(rev["revision"], rev["applied"]) for rev in answer]


def _no_secret(text_: str, tokens: dict[str, str], pg_url: str) -> None:
    for secret in [*tokens.values(), os.environ["LEARNHUB_APP_PASSWORD"]]:
        assert secret not in text_
    password = make_url(pg_url).password
    assert password is None or str(password) not in text_


def test_an_empty_database_is_at_base_with_every_revision_pending(
    client: Any, tokens: dict[str, str], pg_url: str
) -> None:
    read = auth(tokens["read"])
    state = client.get(f"{PREFIX}/migrations", headers=read)
    assert state.status_code == 200, state.text
    body = state.json()
    assert (body["current"], body["heads"], body["up_to_date"]) == ([], ["0002"], False)
    assert [(rev["revision"], rev["down_revisions"]) for rev in body["pending"]] == [
        ("0001", []),
        ("0002", ["0001"]),
    ]
    history = client.get(f"{PREFIX}/migrations/history", headers=read).json()
    assert _revisions(history) == [("0002", False), ("0001", False)]
    assert history[0]["is_head"] and not history[1]["is_head"]
    assert "path" not in history[0]  # revisions, not the server's files

    plan = client.post(f"{PREFIX}/migrations/plan", headers=auth(tokens["admin"]))
    assert plan.status_code == 200, plan.text
    sql = plan.json()["sql"]
    assert "CREATE TABLE organizations" in sql and "alembic_version" in sql
    assert [rev["revision"] for rev in plan.json()["pending"]] == ["0001", "0002"]
    _no_secret(state.text + plan.text, tokens, pg_url)
    assert _execute(pg_url, "SELECT to_regclass('alembic_version')") == [(None,)]  # nothing ran


def test_an_upgrade_job_backs_up_then_applies_each_revision(
    client: Any, tokens: dict[str, str], pg_url: str, api_settings: Settings
) -> None:
    # The database holds data before its first migration: the backup has work to do.
    _execute(pg_url, 'CREATE TABLE "Mixed ""Case""" AS SELECT 1 AS id')
    admin = auth(tokens["admin"])
    started = client.post(f"{PREFIX}/migrations/upgrade", headers=admin, json={"target": "heads"})
    assert started.status_code == 202, started.text
    client.app.state.runtime.jobs.wait(300)
    job = client.get(f"{PREFIX}/jobs/{started.json()['id']}", headers=admin).json()
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert (result["before"], result["after"]) == ([], ["0002"])
    assert [rev["revision"] for rev in result["applied"]] == ["0001", "0002"]
    assert all(rev["seconds"] > 0 and rev["attempts"] == 1 for rev in result["applied"])
    assert job["progress"]["done"] == job["progress"]["total"] == 2
    assert job["progress"]["phase"].startswith("0002 applied in ")

    backups = list_backups(open_storage(api_settings))
    assert len(backups) == 1 and result["backup_id"] == backups[0].id
    listed = client.get(f"{PREFIX}/backups", headers=admin).json()
    assert [entry["id"] for entry in listed] == [backups[0].id]

    state = client.get(f"{PREFIX}/migrations", headers=admin).json()
    assert (state["current"], state["pending"], state["up_to_date"]) == (["0002"], [], True)
    history = client.get(f"{PREFIX}/migrations/history", headers=admin).json()
    assert _revisions(history) == [("0002", True), ("0001", True)]
    assert _execute(pg_url, "SELECT count(*) FROM organizations") == [(0,)]
    plan = client.post(f"{PREFIX}/migrations/plan", headers=admin).json()
    assert (plan["pending"], plan["sql"]) == ([], "")

    engine = create_engine(make_url(pg_url).set(drivername="postgresql+psycopg"))
    with engine.connect() as conn:
        calls = [(e.route, e.outcome) for e in audit_entries(conn)]
    engine.dispose()
    assert (f"{PREFIX}/migrations/upgrade", "started") in calls
    assert (f"{PREFIX}/migrations/plan", "ok") in calls
    _no_secret(str(job) + str(history), tokens, pg_url)


def test_a_target_naming_no_revision_is_refused_before_any_job(
    client: Any, tokens: dict[str, str]
) -> None:
    admin = auth(tokens["admin"])
    for route in ("plan", "upgrade"):
        answer = client.post(f"{PREFIX}/migrations/{route}", headers=admin, json={"target": "fffe"})
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["type"] == "RevisionNotFound"
    bad = client.post(f"{PREFIX}/migrations/upgrade", headers=admin, json={"target": "a:b"})
    assert bad.status_code == 422
    assert client.app.state.runtime.jobs.list() == []


def test_each_route_needs_its_scope(make_client: Any, tokens: dict[str, str]) -> None:
    client = make_client(rate_limit=2)
    for method, route in ROUTES:
        answer = client.request(method, f"{PREFIX}{route}")
        assert answer.status_code == 401, (route, answer.text)
        assert answer.json()["error"]["type"] == "TokenRequired"
    for method, route in ROUTES[2:]:
        for scope in ("read", "operate"):
            answer = client.request(method, f"{PREFIX}{route}", headers=auth(tokens[scope]))
            assert answer.status_code == 403, (route, scope, answer.text)
    admin = auth(tokens["admin"])
    answers = [client.post(f"{PREFIX}/migrations/plan", headers=admin) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert client.app.state.runtime.jobs.list() == []


def test_without_an_alembic_config_the_routes_say_how_to_set_one(
    pg_url: str, tmp_path: Path, tokens: dict[str, str]
) -> None:
    from fastapi.testclient import TestClient

    settings = Settings(database_url=pg_url, backup_storage=str(tmp_path / "backups"))
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        for method, route in ROUTES:
            answer = client.request(method, f"{PREFIX}{route}", headers=auth(tokens["admin"]))
            assert answer.status_code == 409, (route, answer.text)
            error = answer.json()["error"]
            assert error["type"] == "NotEnabled"
            assert "PGWARDEN_ALEMBIC_CONFIG" in error["hint"]
        assert client.app.state.runtime.jobs.list() == []
    settings = Settings(database_url=pg_url, alembic_config=tmp_path / "missing.ini")
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        answer = client.get(f"{PREFIX}/migrations", headers=auth(tokens["read"]))
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["type"] == "MigrationsNotFound"


@pytest.fixture
def no_storage(pg_url: str) -> Settings:
    return Settings(database_url=pg_url, alembic_config=LEARNHUB_INI)


def test_an_upgrade_without_a_backup_storage_is_refused(
    no_storage: Settings, tokens: dict[str, str], pg_url: str
) -> None:
    from fastapi.testclient import TestClient

    with TestClient(create_app(no_storage), base_url="https://testserver") as client:
        answer = client.post(f"{PREFIX}/migrations/upgrade", headers=auth(tokens["admin"]))
        assert answer.status_code == 400, answer.text
        assert "PGWARDEN_BACKUP_STORAGE" in answer.json()["error"]["hint"]
        assert client.app.state.runtime.jobs.list() == []
    assert _execute(pg_url, "SELECT to_regclass('alembic_version')") == [(None,)]


def _wait_for(condition: Any, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_an_upgrade_waiting_for_a_lock_retries_and_a_second_one_is_refused(
    client: Any, make_client: Any, tokens: dict[str, str], pg_url: str
) -> None:
    admin = auth(tokens["admin"])
    first = client.post(f"{PREFIX}/migrations/upgrade", headers=admin, json={"target": "0001"})
    client.app.state.runtime.jobs.wait(300)
    assert client.get(f"{PREFIX}/jobs/{first.json()['id']}", headers=admin).json()["status"] == (
        "succeeded"
    )
    engine = create_engine(make_url(pg_url).set(drivername="postgresql+psycopg"))
    holder = engine.connect()
    try:
        # Reads and writes of the application go on; 0002's ALTER on content must wait.
        holder.execute(text("LOCK TABLE content IN ROW EXCLUSIVE MODE"))
        started = client.post(
            f"{PREFIX}/migrations/upgrade",
            headers=admin,
            json={"lock_timeout_s": 0.2, "retries": 10},
        )
        assert started.status_code == 202, started.text
        job_url = f"{PREFIX}/jobs/{started.json()['id']}"

        def phase() -> str:
            progress = client.get(job_url, headers=admin).json()["progress"] or {}
            return str(progress.get("phase", ""))

        _wait_for(lambda: "timed out on a lock" in phase())
        again = client.post(f"{PREFIX}/migrations/upgrade", headers=admin)
        assert again.status_code == 409, again.text
        assert again.json()["error"]["type"] == "MigrationRunning"
        # Another server process on the same database: its job is refused by the lock.
        other = make_client()
        elsewhere = other.post(f"{PREFIX}/migrations/upgrade", headers=admin)
        assert elsewhere.status_code == 202, elsewhere.text
        other.app.state.runtime.jobs.wait(300)
        refused = other.get(f"{PREFIX}/jobs/{elsewhere.json()['id']}", headers=admin).json()
        assert refused["status"] == "failed"
        assert refused["error"] == "another process is upgrading this database."
    finally:
        holder.rollback()
        holder.close()
        engine.dispose()
    client.app.state.runtime.jobs.wait(300)
    job = client.get(job_url, headers=admin).json()
    assert job["status"] == "succeeded", job
    ((applied),) = job["result"]["applied"]
    assert applied["revision"] == "0002" and applied["attempts"] >= 2
    assert job["result"]["backup_id"] is not None
    state = client.get(f"{PREFIX}/migrations", headers=admin).json()
    assert state["current"] == ["0002"]
