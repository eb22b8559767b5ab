"""Helpers of the logical backup tests: keys, fingerprints of a database, damage."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from pgwarden.backup.catalog import find_backup
from pgwarden.backup.crypto import BackupKeyring
from pgwarden.backup.storage import LocalStorage

LARGE_OBJECT = b"pgwarden large object \x00\x01\x02 " * 100


def key_setting(key_id: str = "k1", fill: bytes = b"a") -> str:
    """Return a PGWARDEN_ENCRYPTION_KEYS value with one 32-byte key."""
    return f"{key_id}:{base64.b64encode(fill * 32).decode()}"


def keyring(key_id: str = "k1", fill: bytes = b"a") -> BackupKeyring:
    """Return a keyring of one key."""
    return BackupKeyring.from_setting(key_setting(key_id, fill))


def engine(url: str) -> sa.Engine:
    return sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://"), poolclass=NullPool
    )


PARALLEL = "pg_restore | psql, in parallel"


def assert_restored_in_parallel(restored: Any, url: str) -> None:
    """Check that a large restore into ``url`` ran in parallel the way that server allows.

    Into PostgreSQL 17 or later it runs in three steps, its data streamed through psqls
    and nothing staged. A script from pg_restore 17 or later sets what an older server
    refuses, so into PostgreSQL 16 or older pg_restore itself connects to the server
    (with ``--jobs`` from a staged copy where the format allows it).
    """
    if int(execute(url, "SHOW server_version_num")[0]) >= 170000:
        assert restored.mode == PARALLEL and not restored.staged and restored.counted_on_load
    else:
        assert restored.mode == "pg_restore | psql"
    assert restored.ok


def execute(url: str, *statements: str) -> list[Any]:
    """Run statements in one transaction; return the first column of the last one's rows."""
    eng = engine(url)
    try:
        with eng.begin() as conn:
            rows: list[Any] = []
            for statement in statements:
                result = conn.execute(sa.text(statement))
                rows = list(result.scalars()) if result.returns_rows else []
            return rows
    finally:
        eng.dispose()


TABLES = """
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_toast'
ORDER BY 1
"""


def checksums(url: str) -> dict[str, str | None]:
    """Return the md5 of every user table's ordered rows."""
    tables = execute(url, TABLES)
    sums = {}
    for table in tables:
        query = f"SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {table} AS t"
        sums[table] = execute(url, query)[0]
    return sums


def sequences(url: str) -> dict[str, Any]:
    """Return every sequence's last value (None if never used)."""
    eng = engine(url)
    try:
        with eng.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT schemaname || '.' || sequencename, last_value FROM pg_sequences")
            )
            return dict(rows.all())
    finally:
        eng.dispose()


def large_objects(url: str) -> list[bytes]:
    """Return the content of every large object, by oid."""
    return [
        bytes(v)
        for v in execute(url, "SELECT lo_get(oid) FROM pg_largeobject_metadata ORDER BY oid")
    ]


def user_tables(url: str) -> list[str]:
    return list(execute(url, TABLES))


def data_path(storage: LocalStorage, backup_id: str) -> Path:
    """Return the file of a custom-format backup's archive."""
    entry = find_backup(storage, backup_id)
    assert entry.manifest is not None
    return storage.root / entry.prefix / entry.manifest.files[0].name


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Change one byte of ``path`` (the middle one unless ``offset`` says)."""
    data = bytearray(path.read_bytes())
    where = len(data) // 2 if offset is None else offset
    data[where] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path, keep: float = 0.6) -> None:
    """Cut ``path`` to a share of its length."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
