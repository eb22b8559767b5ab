"""Fixtures of the admin API's tests: a database, tokens of each scope, a client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from pgwarden.api import create_app, create_token
from pgwarden.config import Settings
from pgwarden.testing.servers import free_port

fastapi_testclient = pytest.importorskip("fastapi.testclient")


@pytest.fixture
def api_settings(pg_url: str, tmp_path: Path) -> Settings:
    """Return settings naming a fresh database and a backup directory."""
    return Settings(database_url=pg_url, backup_storage=str(tmp_path / "backups"))


@pytest.fixture
def tokens(pg_url: str) -> dict[str, str]:
    """Return a secret for each scope, and one for a revoked token."""
    engine = create_engine(make_url(pg_url).set(drivername="postgresql+psycopg"))
    try:
        with engine.begin() as conn:
            return {scope: create_token(conn, scope=scope).secret
                    for scope in ("read", "operate", "admin")}  # fmt: skip
    finally:
        engine.dispose()


@pytest.fixture
def make_client(api_settings: Settings) -> Iterator[Any]:
    """Return a factory of test clients of an app with the options given."""
    made: list[Any] = []

    def make(**options: Any) -> Any:
        app = create_app(api_settings, **options)
        client = fastapi_testclient.TestClient(app, base_url="https://testserver")
        client.__enter__()
        made.append(client)
        return client

    yield make
    for client in made:
        client.app.state.runtime.jobs.wait(120)
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Any) -> Any:
    """Return a test client of the API with the default options."""
    return make_client()


@pytest.fixture
def served(api_settings: Settings) -> Iterator[tuple[str, Any]]:
    """Serve the API with uvicorn on a loopback port; yield its base URL and app."""
    import uvicorn

    app = create_app(api_settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(400):
        if server.started:
            break
        time.sleep(0.025)
    try:
        yield f"http://127.0.0.1:{server.config.port}", app
    finally:
        app.state.runtime.jobs.wait(120)
        server.should_exit = True
        thread.join(30)
