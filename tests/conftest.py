"""Shared fixtures. The server fixtures (pg_server, pg_url, pg_engine) come from
pgwarden's own pytest plugin, pgwarden.testing.plugin."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Variables that would make a test depend on the machine it runs on.
_ISOLATED = [
    "DATABASE_URL", "DATABASE_REPLICA_URL", "DB_POOL_SIZE", "DB_MAX_OVERFLOW",
    "DB_POOL_TIMEOUT", "DB_POOL_RECYCLE", "DB_ECHO", "PGWARDEN_CONFIG",
    "PGWARDEN_LOG_FORMAT", "PGWARDEN_LOG_LEVEL", "PGWARDEN_DATA_DIR",
    "PGWARDEN_SERVER_PORT", "PGWARDEN_STATEMENT_TIMEOUT", "PGWARDEN_APPLICATION_NAME",
    "PGWARDEN_CONNECT_TIMEOUT", "PGWARDEN_ENCRYPTION_KEYS",
]  # fmt: skip


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run each test in an empty working directory with no pgwarden settings set."""
    for name in _ISOLATED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """Yield a fresh directory an embedded server (run as any user) can live in."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="pgwarden-srv-"))
    os.chmod(path, 0o711)  # noqa: S103 - search only, no listing
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
