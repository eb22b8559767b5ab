"""Any legal name survives export, import, upsert, rollback and erase.

Schemas, tables and columns are named from a pool of names that break generated SQL:
keywords, names equal to the aliases and helper columns pgwarden's SQL uses, ``%``,
``:x`` and ``$1`` (placeholders to one layer or another), quotes, dots, non-ASCII, and
the longest name PostgreSQL keeps (63 bytes).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgwarden._sql import qualified as qualified_name
from pgwarden._sql import quote_identifier as quote
from pgwarden.testing.servers import TestServer
from pgwarden.transfer import erase_user, export_bundle, import_bundle, rollback_run
from transfer_import_support import connection, run

HOSTILE = [
    "r", "t", "e", "j", "l", "n", "k", "line", "key", "previous", "select", "order", "user",
    "Mixed \"Case\" col", "a%b", "%s", "%(x)s", ":x", "$1", "?", "a.b", "semi;colon",
    "quote'd", "back\\slash", "tab\there", "space name", "UPPER", "ünïcødé 名前",
    "pgw_s", "pgw_t", "pgw_up", "pgw_upd", "pgw_p", "pgw_x", "pgw_row", "pgw_c", "pgw_k0",
    "_pgw_n", "_pgw_pos", "_pgw_found", "_pgw_previous", "_pgw_order", "whole_row",
    "x" * 63, "é" * 31,
]  # fmt: skip

names = st.sampled_from(HOSTILE)


@st.composite
def schemas(draw: st.DrawFn) -> dict[str, Any]:
    """Draw a schema name, two table names and three distinct column names per table."""
    schema = draw(names)
    parent, child = draw(st.lists(names, min_size=2, max_size=2, unique=True))
    pcols = draw(st.lists(names, min_size=2, max_size=2, unique=True))
    ccols = draw(st.lists(names, min_size=3, max_size=3, unique=True))
    return {"schema": schema, "parent": parent, "child": child, "pcols": pcols, "ccols": ccols}


def build(url: str, shape: dict[str, Any], *, rows: bool) -> tuple[str, str]:
    """Create the drawn schema (after dropping it) and return the two tables' SQL names."""
    schema = quote(shape["schema"])
    parent = qualified_name(shape["schema"], shape["parent"])
    child = qualified_name(shape["schema"], shape["child"])
    pk, pv = (quote(c) for c in shape["pcols"])
    ck, cfk, cv = (quote(c) for c in shape["ccols"])
    statements = [
        *(f"DROP SCHEMA {quote(name)} CASCADE" for name in _schemas(url)),
        f"CREATE SCHEMA {schema}",
        f"CREATE TABLE {parent} ({pk} bigint PRIMARY KEY, {pv} text)",
        f"CREATE TABLE {child} ({ck} int PRIMARY KEY, {cfk} bigint NOT NULL REFERENCES {parent},"
        f" {cv} char(4))",
        f"CREATE INDEX ON {child} ({cfk})",
    ]
    if rows:
        statements += [
            f"INSERT INTO {parent} VALUES (1, 'one %s :x'), (2, E'two\\t$1'), (3, NULL)",
            f"INSERT INTO {child} VALUES (10, 1, 'ab'), (11, 1, 'abcd'), (12, 2, NULL)",
        ]
    with connection(url) as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
        conn.commit()
    return parent, child


def _schemas(url: str) -> list[str]:
    """Return the schemas an earlier example left (all but public and the system's)."""
    with connection(url) as conn:
        query = (
            "SELECT nspname FROM pg_namespace WHERE nspname NOT IN"
            " ('public', 'pgwarden', 'information_schema') AND nspname NOT LIKE 'pg\\_%'"
        )
        return list(conn.execute(sa.text(query)).scalars())


def table_rows(url: str, table: str) -> list[str]:
    with connection(url) as conn:
        query = f"SELECT CAST(ROW(pgw_w.*) AS text) FROM {table} AS pgw_w ORDER BY 1"
        return list(conn.execute(sa.text(query)).scalars())


@pytest.fixture(scope="module")
def databases(pg_server: TestServer) -> Iterator[tuple[str, str]]:
    names = [pg_server.create_database() for _ in range(2)]
    yield pg_server.url(names[0]), pg_server.url(names[1])
    for name in names:
        pg_server.drop_database(name)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(shape=schemas(), fmt=st.sampled_from(["copy", "jsonl"]))
def test_hostile_names_survive_every_path(
    databases: tuple[str, str], tmp_path_factory: pytest.TempPathFactory, shape: dict[str, Any],
    fmt: str,
) -> None:  # fmt: skip
    source, target = databases
    parent, child = build(source, shape, rows=True)
    build(target, shape, rows=False)
    out = tmp_path_factory.mktemp("bundle") / "b"
    with connection(source) as conn:
        export_bundle(conn, out, format=fmt)  # type: ignore[arg-type]
    expected = {t: table_rows(source, t) for t in (parent, child)}

    with connection(target) as conn:
        inserted = import_bundle(conn, out)
        conn.commit()
    assert inserted.ok and {t: table_rows(target, t) for t in expected} == expected

    # Change a value on the target, upsert the bundle back over it, roll the upsert back.
    pv = quote(shape["pcols"][1])
    run(target, f"UPDATE {parent} SET {pv} = :v WHERE {quote(shape['pcols'][0])} = 1", v="% :x")
    changed = table_rows(target, parent)
    with connection(target) as conn:
        upserted = import_bundle(conn, out, mode="upsert")
        conn.commit()
    assert upserted.ok and upserted.totals["updated"] == 1, upserted
    assert {t: table_rows(target, t) for t in expected} == expected
    with connection(target) as conn:
        rollback_run(conn, upserted.run_id)  # type: ignore[arg-type]
        conn.commit()
    assert table_rows(target, parent) == changed

    # Erase parent 1 with its children, then roll the erase back.
    before = {t: table_rows(target, t) for t in expected}
    with connection(target) as conn:
        # as a user types it: ordinary quotes (to_regclass does not read U&"...")
        typed = qualified_name(shape["schema"], shape["parent"], plain=True)
        erased = erase_user(conn, typed, "1")
        conn.commit()
    assert len(table_rows(target, child)) == 1 and len(table_rows(target, parent)) == 2
    with connection(target) as conn:
        rollback_run(conn, erased.run_id)  # type: ignore[arg-type]
        conn.commit()
    assert {t: table_rows(target, t) for t in expected} == before


def test_jsonl_export_of_a_table_with_a_column_named_r(pg_url: str, tmp_path: Path) -> None:
    run(pg_url, "CREATE TABLE t (r int PRIMARY KEY, pgw_row text)", "INSERT INTO t VALUES (1, 'x')")
    with connection(pg_url) as conn:
        export_bundle(conn, tmp_path / "b", format="jsonl")
    data = next((tmp_path / "b" / "data").iterdir()).read_text()
    assert data == '{"r":1,"pgw_row":"x"}\n'


def test_two_tables_whose_dotted_names_read_alike_stay_apart(
    pg_server: TestServer, tmp_path: Path
) -> None:
    ddl = (
        'CREATE SCHEMA "a.b"',
        "CREATE SCHEMA a",
        'CREATE TABLE "a.b".c (id int PRIMARY KEY, v text)',
        'CREATE TABLE a."b.c" (id int PRIMARY KEY, v text)',
    )
    names = [pg_server.create_database() for _ in range(2)]
    source, target = (pg_server.url(n) for n in names)
    try:
        run(source, *ddl, """INSERT INTO "a.b".c VALUES (1, 'schema a.b')""",
            """INSERT INTO a."b.c" VALUES (1, 'table b.c'), (2, 'two')""")  # fmt: skip
        run(target, *ddl)
        with connection(source) as conn:
            exported = export_bundle(conn, tmp_path / "b")
        assert sorted(t.qualified for t in exported.bundle.tables) == ['"a.b".c', 'a."b.c"']
        report = import_bundle_committed(target, tmp_path / "b")
        assert report.totals["inserted"] == 3
        for table in ('"a.b".c', 'a."b.c"'):
            assert table_rows(target, table) == table_rows(source, table)
    finally:
        for name in names:
            pg_server.drop_database(name)


def import_bundle_committed(url: str, bundle: Path) -> Any:
    with connection(url) as conn:
        report = import_bundle(conn, bundle)
        conn.commit()
    return report


def test_every_transfer_command_reads_a_table_name_as_sql_does(
    pg_server: TestServer, tmp_path: Path
) -> None:
    from pgwarden.transfer import export_table, import_csv

    name = pg_server.create_database()
    url = pg_server.url(name)
    try:
        run(
            url,
            'CREATE TABLE "Users" (id int PRIMARY KEY, who text)',
            "CREATE TABLE users (id int PRIMARY KEY, who text)",
            "CREATE SCHEMA app",
            "CREATE TABLE app.only_here (id int PRIMARY KEY, who text)",
            """INSERT INTO "Users" VALUES (1, 'capital')""",
            "INSERT INTO users VALUES (1, 'lower')",
            "INSERT INTO app.only_here VALUES (1, 'app')",
            f'ALTER DATABASE "{name}" SET search_path = public, app',
        )
        exported = {}
        for spelled in ("Users", "users", "public.users", '"Users"', "only_here"):
            with connection(url) as conn:
                result = export_bundle(conn, tmp_path / spelled.replace('"', "q"), tables=[spelled])
            exported[spelled] = [t.qualified for t in result.bundle.tables]
        assert exported == {
            "Users": ["public.users"], "users": ["public.users"],
            "public.users": ["public.users"], '"Users"': ["public.Users"],
            "only_here": ["app.only_here"],
        }  # fmt: skip
        file = tmp_path / "capital.csv"
        with connection(url) as conn:
            export_table(conn, '"Users"', file, format="csv")
        assert file.read_text().splitlines()[1] == "1,capital"
        file.write_text("id,who\n2,imported\n")
        with connection(url) as conn:
            report = import_csv(conn, '"Users"', file)
            conn.commit()
        assert [t.table for t in report.tables] == ["public.Users"]
        assert table_rows(url, '"Users"') == ["(1,capital)", "(2,imported)"]
        with connection(url) as conn:
            erased = erase_user(conn, '"Users"', "2")
            conn.commit()
        assert erased.user_table == "public.Users"
        assert table_rows(url, "users") == ["(1,lower)"]
    finally:
        pg_server.drop_database(name)
