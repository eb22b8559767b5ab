"""The tasks extra: a clear error without it; brokers by URL; the embedded default broker."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fleet_support import Fleet, running_fleet

from pgwarden import ConfigError, NotEnabled
from pgwarden.config import load_settings
from pgwarden.db.embedded import EmbeddedServer
from pgwarden.tasks import parse_fleet
from pgwarden.tasks.app import create_app
from pgwarden.tasks.broker import broker_url
from pgwarden.testing.servers import free_port

ONE_TARGET = {"targets": {"app": {"url": "postgresql://app@db/app"}}}


def test_without_celery_the_worker_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "celery", None)
    fleet = parse_fleet(ONE_TARGET, environ={})
    with pytest.raises(NotEnabled, match="need celery, which is not installed") as caught:
        create_app(fleet=fleet, settings=load_settings())
    assert "pip install 'pgwarden[tasks]'" in (caught.value.hint or "")


def test_without_croniter_the_config_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "croniter", None)
    with pytest.raises(NotEnabled, match="need croniter, which is not installed") as caught:
        parse_fleet(ONE_TARGET, environ={})
    assert "pip install 'pgwarden[tasks]'" in (caught.value.hint or "")


def test_broker_urls() -> None:
    settings = load_settings()
    assert broker_url("redis://127.0.0.1:6379/0", settings) == "redis://127.0.0.1:6379/0"
    assert broker_url("amqp://guest@h//", settings) == "amqp://guest@h//"
    assert (
        broker_url("postgresql://u:p@h:5432/q", settings)
        == "pgwarden+postgresql+psycopg://u:p@h:5432/q"
    )
    with pytest.raises(ConfigError, match="is not a broker URL"):
        broker_url("mqtt://h", settings)


def test_the_embedded_broker_needs_the_embedded_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PGWARDEN_DATA_DIR", str(tmp_path / "none"))
    with pytest.raises(ConfigError, match="embedded server, which is not running"):
        broker_url("embedded", load_settings())


@pytest.mark.slow
def test_the_embedded_broker_runs_jobs_with_no_service(
    server_dir: Path, target_db: str, catalogue_db: str, tmp_path: Path
) -> None:
    port = free_port()
    server = EmbeddedServer(server_dir / "data", port=port)
    server.start()
    env = {
        "PGWARDEN_DATA_DIR": str(server_dir / "data"),
        "PGWARDEN_SERVER_PORT": str(port),
        "URL_APP": target_db,
        "CAT_URL": catalogue_db,
    }
    try:
        with running_fleet(tmp_path, env, catalogue_db) as fleet:
            fleet.write(
                '[tasks]\ncatalogue_env = "CAT_URL"\nclock_speed = 600\n'
                '[targets.app]\nurl_env = "URL_APP"\n'
                '[targets.app.schedule]\nsnapshot = "* * * * *"\nbackup = "off"\n'
                'verify = "off"\nexpire = "off"\ndoctor = "off"\n'
            )
            fleet.worker("wa")
            fleet.start("beat", "beat")
            fleet.wait(lambda: _snapshots(fleet) >= 2, timeout=180, why="two snapshots")
    finally:
        server.stop()


def _snapshots(fleet: Fleet) -> int:
    return sum(r.status == "ok" and r.job == "snapshot" for r in fleet.runs(target="app"))
