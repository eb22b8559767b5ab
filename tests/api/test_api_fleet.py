"""The fleet of scheduled jobs and the WAL archive, through the API and the dashboard."""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from api_support import auth

from pgwarden.api import create_app
from pgwarden.backup.physical import create_base_backup
from pgwarden.backup.storage import LocalStorage
from pgwarden.config import Settings
from pgwarden.tasks import catalogue
from pgwarden.testing.servers import TestServer

sys.path.insert(0, str(Path(__file__).parents[1] / "backup"))
from pitr_support import archiving_cluster, install_for

testclient = pytest.importorskip("fastapi.testclient")
PREFIX = "/v1/database"
DASH = f"{PREFIX}/dashboard"


@pytest.fixture
def fleet_file(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """Write a config naming one target (its URL with a password), with runs and an alert."""
    password = sa.make_url(pg_url).password or "a-password-for-the-test"
    url = sa.make_url(pg_url).set(password=password).render_as_string(hide_password=False)
    monkeypatch.setenv("APP_URL", url)
    config = tmp_path / "fleet.toml"
    config.write_text(
        f'[targets.app]\nurl_env = "APP_URL"\nstorage = "{tmp_path / "fleet-backups"}"\n'
        '[targets.app.schedule]\nbackup = "0 3 * * *"\n'
    )
    with catalogue.catalogue(url) as conn:
        ok = catalogue.start_run(conn, target="app", job="backup")
        catalogue.finish_run(conn, ok, status="ok")
        failed = catalogue.start_run(conn, target="app", job="snapshot")
        catalogue.finish_run(conn, failed, status="failed", error="disk full")
        catalogue.open_incident(
            conn, target="app", key="job:snapshot", kind="job", message="snapshot failed"
        )
    catalogue.dispose_engines()
    return config, password


def _sign_in(client: Any, secret: str) -> None:
    assert client.post(f"{DASH}/login", data={"token": secret}).status_code == 200


def test_the_fleet_route_and_page_show_each_target(
    api_settings: Settings, tokens: dict[str, str], fleet_file: tuple[Path, str]
) -> None:
    config, password = fleet_file
    app = create_app(api_settings, fleet_config=str(config))
    with testclient.TestClient(app, base_url="https://testserver") as client:
        assert client.get(f"{PREFIX}/fleet").status_code == 401
        answer = client.get(f"{PREFIX}/fleet", headers=auth(tokens["read"]))
        one = client.get(f"{PREFIX}/fleet/app", headers=auth(tokens["read"]))
        unknown = client.get(f"{PREFIX}/fleet/nope", headers=auth(tokens["read"]))
        _sign_in(client, tokens["read"])
        page = client.get(f"{DASH}/fleet")
        target_page = client.get(f"{DASH}/fleet/app")
        unknown_page = client.get(f"{DASH}/fleet/%3Cb%3Enope")
    assert answer.status_code == 200, answer.text
    assert one.status_code == 200 and one.json() == answer.json()[0]
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "UnknownTarget"
    assert "orders" not in unknown.text and "app" in unknown.json()["error"]["hint"]
    assert target_page.status_code == 200 and f'href="{DASH}/fleet/app"' in page.text
    assert "0 3 * * *" in target_page.text and "disk full" in target_page.text
    assert password not in target_page.text
    assert "no target named" in unknown_page.text and "<b>nope" not in unknown_page.text
    [target] = answer.json()
    assert target["target"] == "app" and not target["healthy"]
    jobs = {job["job"]: job for job in target["jobs"]}
    assert jobs["backup"]["state"] == "ok" and jobs["backup"]["last_success"]
    assert jobs["backup"]["next_run"].endswith("03:00:00Z")
    assert jobs["snapshot"]["state"] == "failing"
    assert jobs["snapshot"]["last_error"] == "disk full"
    assert [i["message"] for i in target["incidents"]] == ["snapshot failed"]
    assert password not in answer.text and password not in page.text
    assert page.status_code == 200
    assert "snapshot failed" in page.text and "disk full" in page.text
    assert re.search(r'<td class="failing">failing</td>', page.text)


def test_without_a_fleet_the_route_says_how_to_configure_one(
    client: Any, tokens: dict[str, str], tmp_path: Path
) -> None:
    answer = client.get(f"{PREFIX}/fleet", headers=auth(tokens["read"]))
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["type"] == "NotEnabled"
    assert "[targets.NAME]" in answer.json()["error"]["hint"]
    _sign_in(client, tokens["read"])
    page = client.get(f"{DASH}/fleet")
    assert page.status_code == 200 and "no fleet of scheduled jobs" in page.text
    pitr = client.get(f"{PREFIX}/pitr", headers=auth(tokens["read"]))  # no archive either
    assert pitr.status_code == 409 and "pitr setup" in pitr.json()["error"]["hint"]
    assert "no WAL archive" in client.get(f"{DASH}/backups").text


def test_the_pitr_route_and_backups_page_show_the_archive(
    pg_server: TestServer, tokens: dict[str, str], pg_url: str
) -> None:
    base = Path(tempfile.mkdtemp(prefix="pgwarden-api-pitr-"))
    base.chmod(0o711)
    storage = LocalStorage(base / "storage")
    try:
        with archiving_cluster(base, storage, install_for(pg_server)) as source:
            backup = create_base_backup(source.url, storage)
            source.wait_archived()
            # The API's catalogue (tokens) is in the test database; the archive in storage.
            settings = Settings(database_url=pg_url, backup_storage=str(base / "storage"))
            app = create_app(settings)
            with testclient.TestClient(app, base_url="https://testserver") as client:
                answer = client.get(f"{PREFIX}/pitr", headers=auth(tokens["read"]))
                _sign_in(client, tokens["read"])
                page = client.get(f"{DASH}/backups")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert answer.status_code == 200, answer.text
    status = answer.json()
    assert [b["id"] for b in status["base_backups"]] == [backup.id]
    assert status["recoverable"] and status["archived_files"] >= 1
    assert status["newest_segment"] and status["last_drill"] is None
    assert page.status_code == 200 and backup.id in page.text
    assert status["newest_segment"] in page.text
