"""``pgwarden tokens`` and ``pgwarden serve``, checked through the library and over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from pgwarden.api import audit_entries, find_token, list_tokens
from pgwarden.cli.main import cli
from pgwarden.testing.servers import free_port


def _run(pg_url: str, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--database-url", pg_url, *args], prog_name="pgwarden")


def test_tokens_create_list_revoke(pg_url: str) -> None:
    made = _run(pg_url, "--json", "tokens", "create", "--scope", "operate", "--name", "on-call")
    assert made.exit_code == 0, made.output
    created = json.loads(made.stdout)
    secret = created["secret"]
    engine = create_engine(make_url(pg_url).set(drivername="postgresql+psycopg"))
    with engine.connect() as conn:
        token = find_token(conn, secret)
        assert token is not None and token.scope == "operate" and token.name == "on-call"
        assert token.allows("read") and not token.allows("admin")
    shown = _run(pg_url, "tokens", "list")
    assert shown.exit_code == 0 and "on-call" in shown.output and secret not in shown.output
    gone = _run(pg_url, "tokens", "revoke", str(created["token"]["id"]))
    assert gone.exit_code == 0, gone.output
    with engine.connect() as conn:
        assert find_token(conn, secret) is None
        assert list_tokens(conn) == []
        assert len(list_tokens(conn, revoked=True)) == 1
        assert audit_entries(conn) == []
    engine.dispose()
    unknown = _run(pg_url, "tokens", "revoke", "999")
    assert unknown.exit_code == 2 and "no token 999" in unknown.output
    bad = _run(pg_url, "tokens", "create", "--scope", "root")
    assert bad.exit_code == 2
    audit = _run(pg_url, "tokens", "audit")
    assert audit.exit_code == 0


def test_serve_answers_over_http(pg_url: str) -> None:
    port = free_port()
    made = _run(pg_url, "--json", "tokens", "create", "--scope", "read")
    secret = json.loads(made.stdout)["secret"]
    env = {**os.environ, "DATABASE_URL": pg_url}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "pgwarden"), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}/v1/database"
        for _ in range(200):
            try:
                health = httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        assert health.json() == {"status": "ok"}
        assert httpx.get(f"{base}/summary").status_code == 401
        summary = httpx.get(f"{base}/summary", headers={"Authorization": f"Bearer {secret}"})
        assert summary.status_code == 200 and summary.json()["checks_run"] > 0
        metrics = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {secret}"})
        assert 'pgwarden_db_statements_total{engine="pgwarden-api"' in metrics.text
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0].decode()
    assert secret not in output
