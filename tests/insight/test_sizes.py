"""Sizes of databases, tables and indexes, checked against the server's own functions."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden.insight.sizes import (
    check_sizes,
    database_sizes,
    index_sizes,
    largest_table_findings,
    table_sizes,
)

TABLES = (
    # Values stored out of line, uncompressed: a TOAST table with real data in it.
    "CREATE TABLE documents (id int PRIMARY KEY, body text)",
    "ALTER TABLE documents ALTER COLUMN body SET STORAGE EXTERNAL",
    "INSERT INTO documents SELECT g, repeat(md5(g::text), 100) FROM generate_series(1, 100) AS g",
    "CREATE TABLE events (id int PRIMARY KEY, kind int, at timestamptz DEFAULT now())",
    "CREATE INDEX events_kind ON events (kind)",
    "INSERT INTO events (id, kind) SELECT g, g % 7 FROM generate_series(1, 20000) AS g",
    "CREATE TABLE empty (id int)",
    "ANALYZE documents, events",
)


def server_figures(engine: Engine, table: str) -> tuple[int, ...]:
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                sa.text(
                    """
SELECT pg_total_relation_size(c.oid),
       pg_relation_size(c.oid),
       COALESCE(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0),
       pg_indexes_size(c.oid)
FROM pg_class AS c
WHERE c.oid = CAST(:table AS regclass)
"""
                ),
                {"table": table},
            ).one()
        )


def test_table_sizes_split_into_rows_toast_and_indexes(run, pg_engine: Engine) -> None:
    run(*TABLES)
    with pg_engine.connect() as conn:
        tables = table_sizes(conn)
        top = table_sizes(conn, limit=1)
        large = table_sizes(conn, min_size_bytes=500 * 1024)

    assert [t.table for t in tables] == ["events", "documents", "empty"]
    assert top == tables[:1]
    assert [t.table for t in large] == ["events"]
    by_name = {t.table: t for t in tables}
    for name, table in by_name.items():
        figures = (table.total_bytes, table.heap_bytes, table.toast_bytes, table.index_bytes)
        assert figures == server_figures(pg_engine, name)
    documents = by_name["documents"]
    assert documents.toast_bytes > documents.heap_bytes  # 100 values of 3,200 bytes, out of line
    assert documents.total_bytes >= documents.heap_bytes + documents.toast_bytes
    assert (documents.estimated_rows, by_name["events"].estimated_rows) == (100, 20000)
    assert by_name["empty"].heap_bytes == 0 and by_name["empty"].index_bytes == 0


def test_index_sizes_largest_first(run, pg_engine: Engine) -> None:
    run(*TABLES)
    with pg_engine.connect() as conn:
        indexes = index_sizes(conn, limit=None)
        sizes = dict(
            conn.execute(
                sa.text(
                    "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes"
                )
            ).all()
        )

    assert {i.index: i.size_bytes for i in indexes} == sizes
    assert [i.size_bytes for i in indexes] == sorted(sizes.values(), reverse=True)
    assert {(i.table, i.index) for i in indexes} == {
        ("documents", "documents_pkey"),
        ("events", "events_pkey"),
        ("events", "events_kind"),
    }


def test_database_sizes(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        databases = database_sizes(conn)
        [largest] = database_sizes(conn, limit=1)
        current, size = conn.execute(
            sa.text("SELECT current_database(), pg_database_size(current_database())")
        ).one()

    assert {d.database: d.size_bytes for d in databases}[current] == size
    assert [d.size_bytes for d in databases] == sorted(
        (d.size_bytes for d in databases), reverse=True
    )
    assert largest.size_bytes >= size


def test_largest_tables_is_an_info_report(run, pg_engine: Engine) -> None:
    run(*TABLES, 'CREATE SCHEMA "Sales"', 'CREATE TABLE "Sales"."Order Items" (id int)')
    with pg_engine.connect() as conn:
        [result] = check_sizes(conn, limit=2, min_size_bytes=0)
        [by_default] = check_sizes(conn)
        quoted = [t for t in table_sizes(conn, limit=None) if t.schema == "Sales"]

    assert [f.subject for f in result.findings] == ["public.events", "public.documents"]
    assert all(f.severity == "info" and f.fix is None for f in result.findings)
    assert "of TOAST" in result.findings[1].what
    assert by_default.findings == []  # nothing here reaches 10 MB
    [finding] = largest_table_findings(quoted)
    assert finding.subject == '"Sales"."Order Items"'


def test_sizes_as_a_pg_monitor_role(run, pg_engine: Engine, monitor_role: str) -> None:
    run(*TABLES)
    with pg_engine.connect() as conn, conn.begin():
        conn.execute(sa.text(f"SET LOCAL ROLE {monitor_role}"))
        tables = [t.table for t in table_sizes(conn)]
        indexes = len(index_sizes(conn))
        databases = {d.database for d in database_sizes(conn)}
        [result] = check_sizes(conn, min_size_bytes=0)
        current = conn.execute(sa.text("SELECT current_database()")).scalar_one()

    assert tables == ["events", "documents", "empty"] and indexes == 3
    assert current in databases
    assert result.skipped is None and len(result.findings) == 3
