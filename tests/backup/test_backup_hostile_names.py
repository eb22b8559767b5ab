"""Tables with any legal name back up, verify and restore with their rows counted right.

``%`` in a name was doubled by SQLAlchemy's identifier quoting and again by text SQL,
and ``:x`` read as a bind parameter: the row counts of ``backup create`` failed.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from pgwarden.backup.logical import create_backup
from pgwarden.backup.restore import restore_backup
from pgwarden.backup.storage import LocalStorage
from pgwarden.backup.verify import verify_backup
from pgwarden.testing.servers import TestServer

pytest_plugins = ["logical_fixtures"]  # backups, target_url

SCHEMA = "we%ird:s"
NAMES = [
    "a%b",
    "select",
    'Mixed "Case"',
    ":x",
    "$1",
    "%s",
    "n" * 60,
    "é" * 30,  # 60 bytes
    "tâblé ñ",
    "r",
]


def _fingerprints(url: str) -> dict[tuple[str, str], tuple[int, str]]:
    """Return each hostile table's row count and the md5 of its ordered rows."""
    found = {}
    with psycopg.connect(url) as conn:
        for schema in ("public", SCHEMA):
            for name in NAMES:
                table = sql.Identifier(schema, name)
                query = sql.SQL(
                    "SELECT count(*), md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {} AS t"
                ).format(table)
                count, digest = conn.execute(query).fetchone() or (0, "")
                found[schema, name] = (count, digest)
    return found


@pytest.fixture
def hostile_url(pg_server: TestServer) -> Iterator[str]:
    """Yield a database holding a table of each hostile name in two schemas."""
    name = pg_server.create_database(template="template0")
    url = pg_server.url(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
        for schema in ("public", SCHEMA):
            for rows, table in enumerate(NAMES, start=1):
                target = sql.Identifier(schema, table)
                conn.execute(
                    sql.SQL("CREATE TABLE {} ({} int PRIMARY KEY, {} text)").format(
                        target, sql.Identifier(":id"), sql.Identifier("%s")
                    )
                )
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {} SELECT g, {} || g FROM generate_series(1, {}) AS g"
                    ).format(target, sql.Literal(f"{table} %s :v "), sql.Literal(rows))
                )
    yield url
    pg_server.drop_database(name)


def test_hostile_table_names_back_up_verify_and_restore(
    hostile_url: str, backups: LocalStorage, target_url: str, pg_server: TestServer
) -> None:
    manifest = create_backup(hostile_url, backups).manifest
    counts = {(t.schema, t.name): t.rows for t in manifest.tables}
    expected = _fingerprints(hostile_url)
    assert counts == {key: rows for key, (rows, _) in expected.items()}

    record = verify_backup(backups, manifest.id, hostile_url)
    assert record.ok and len(record.row_checks) == len(expected)
    assert record.amcheck is not None and record.amcheck.indexes_checked >= len(expected)

    result = restore_backup(backups, manifest.id, target_url)
    assert result.ok and len(result.row_checks) == len(expected)
    assert _fingerprints(target_url) == expected

    chosen = pg_server.create_database(template="template0")
    try:
        url = pg_server.url(chosen)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
        picked = restore_backup(backups, manifest.id, url, tables=["a%b", ":x", "$1"], recount=True)
        assert picked.ok and len(picked.row_checks) == 6  # both schemas, counted
        assert all(check.actual == check.expected for check in picked.row_checks)
    finally:
        pg_server.drop_database(chosen)
