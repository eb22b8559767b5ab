"""Every value comes out of every transfer path as it went in: the type matrix.

One table holds a row of every type family users have, with the values that break
naive code (padded ``char(n)``, ``bit(n)``, NaN and infinities, BC dates, JSON with
duplicate keys and spacing, composites with NULL fields, arrays with NULL elements,
text with tabs, newlines, backslashes and ``\\N``). Each path (export as COPY and as
JSONL, import by insert, upsert and replace, staged and copied straight in, with and
without a transform on another column, the CSV pair, and rollback of each) must give
back rows whose text form is identical.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pgwarden.errors import UserError
from pgwarden.testing.servers import TestServer
from pgwarden.transfer import (
    ImportFailed,
    TransformSpec,
    erase_user,
    export_bundle,
    export_table,
    import_bundle,
    import_csv,
    rollback_run,
)
from transfer_import_support import connection, run

TYPES = [
    "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
    "CREATE TYPE pair AS (a int, b text, c char(3))",
    "CREATE DOMAIN short_code AS varchar(6) CHECK (VALUE <> '')",
    "CREATE DOMAIN padded AS char(4)",
]

# Every column but the key and the self-reference, by name.
COLUMNS = {
    "c5": "char(5)",
    "vc": "varchar(8)",
    "tx": "text",
    "b8": "bit(8)",
    "vb": "varbit(10)",
    "n": "numeric(10,3)",
    "nn": "numeric",
    "i2": "int2",
    "i8": "int8",
    "r4": "real",
    "f8": "double precision",
    "m": "money",
    "d": "date",
    "ts": "timestamp(3)",
    "tstz": "timestamptz(2)",
    "t": "time(1)",
    "ttz": "timetz",
    "iv": "interval day to second(2)",
    "iv2": "interval year to month",
    "bo": "boolean",
    "ch": '"char"',
    "nm": "name",
    "o": "oid",
    "u": "uuid",
    "ip": "inet",
    "net": "cidr",
    "mac": "macaddr",
    "by": "bytea",
    "js": "json",
    "jb": "jsonb",
    "tsv": "tsvector",
    "pt": "point",
    "bx": "box",
    "ir": "int4range",
    "nr": "numrange",
    "tsr": "tstzrange",
    "mr": "int4multirange",
    "e": "mood",
    "comp": "pair",
    "dom": "short_code",
    "pad": "padded",
    "ac": "char(3)[]",
    "an": "numeric(5,2)[]",
    "ab": "bit(2)[]",
    "note": "text",  # the column transforms rewrite
}

ROWS: list[dict[str, Any]] = [
    {
        "id": 1,
        "parent": None,
        "c5": "AB",
        "vc": "éèê漢字",
        "tx": "tab\there\nnew line\\backslash \\N é",
        "b8": "10101010",
        "vb": "101",
        "n": "12345.678",
        "nn": "0.000000000000000000001",
        "i2": "-32768",
        "i8": "9223372036854775807",
        "r4": "NaN",
        "f8": "Infinity",
        "m": "1234.56",
        "d": "0044-03-15 BC",
        "ts": "2026-01-02 03:04:05.123",
        "tstz": "2026-01-02 03:04:05.12+05",
        "t": "23:59:59.9",
        "ttz": "12:00:00+05:30",
        "iv": "1 day 02:03:04.56",
        "iv2": "1 year 2 months",
        "bo": "true",
        "ch": "x",
        "nm": "a name",
        "o": "4294967295",
        "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "ip": "192.168.1.1/24",
        "net": "10.0.0.0/8",
        "mac": "08:00:2b:01:02:03",
        "by": "\\x00ff5c0a0d09",
        "js": '{"a": 1, "a": 2,   "b" :[1,2] }',
        "jb": '{"k": [1, "two", null, 1.50]}',
        "tsv": "a:1 fat:2 cat:3A",
        "pt": "(1.5,-2)",
        "bx": "((0,0),(1,1))",
        "ir": "[1,10)",
        "nr": "(1.5,2.50]",
        "tsr": "[2026-01-01 00:00:00+00,infinity)",
        "mr": "{[1,3), [5,7)}",
        "e": "happy",
        "comp": '(1,,"x")',
        "dom": "XY",
        "pad": "Q",
        "ac": '{"AB ",NULL,"XYZ"}',
        "an": "{1.50,NULL,-2.25}",
        "ab": "{10,NULL,01}",
        "note": "first",
    },
    {"id": 2, "parent": 1},  # every other column NULL
    {
        "id": 3,
        "parent": 1,
        "c5": "ABCDE",
        "vc": "12345678",
        "tx": "\\N",
        "b8": "00000001",
        "vb": "",
        "n": "-0.001",
        "nn": "NaN",
        "i2": "0",
        "i8": "-1",
        "r4": "-0",
        "f8": "-Infinity",
        "m": "-0.01",
        "d": "infinity",
        "ts": "-infinity",
        "tstz": "infinity",
        "t": "00:00",
        "ttz": "00:00:00-12",
        "iv": "-00:00:00.01",
        "iv2": "-3 years",
        "bo": "false",
        "ch": "\\",
        "nm": "",
        "o": "0",
        "u": "00000000-0000-0000-0000-000000000000",
        "ip": "::1",
        "net": "2001:db8::/32",
        "mac": "ff:ff:ff:ff:ff:ff",
        "by": "\\x",
        "js": "[]",
        "jb": '"a \\"quoted\\" string"',
        "tsv": "",
        "pt": "(0,0)",
        "bx": "((-1,-1),(-1,-1))",
        "ir": "empty",
        "nr": "(,)",
        "tsr": "empty",
        "mr": "{}",
        "e": "sad",
        "comp": "(,,)",
        "dom": "ABCDEF",
        "pad": "WXYZ",
        "ac": "{}",
        "an": "{NULL}",
        "ab": "{11}",
        "note": "third",
    },
    {
        "id": 4,
        "parent": 3,
        "c5": " lead",
        "tx": "carriage\rreturn, \"quotes\", 'single', comma; semicolon",
        "r4": "3.4028235e+38",
        "f8": "0.1",
        "nn": "-Infinity",
        "m": "0",
        "ac": '{"a\\"b",",,,","   "}',
        "comp": '(-1,"a \\"q\\" (x), y","a b")',
        "js": "null",
        "jb": "{}",
        "note": "fourth",
    },
]


def create(url: str, name: str = "matrix") -> None:
    """Create the matrix table ``name`` (self-referencing) and its flat twin ``name_flat``."""
    columns = ", ".join(f"{quote_ident(c)} {t}" for c, t in COLUMNS.items())
    run(
        url,
        f"CREATE TABLE {name} (id int PRIMARY KEY, parent int REFERENCES {name}, {columns})",
        f"CREATE TABLE {name}_flat (id int PRIMARY KEY, parent int, {columns})",
    )


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def fill(url: str, table: str = "matrix", rows: list[dict[str, Any]] = ROWS) -> None:
    """Insert ``rows``, each value given as the text a user would type."""
    for row in rows:
        names = list(row)
        params = {f"v{i}": None if v is None else str(v) for i, v in enumerate(row.values())}
        casts = ", ".join(
            f"CAST(CAST(:v{i} AS text) AS {COLUMNS.get(name, 'int')})"
            for i, name in enumerate(names)
        )
        run(url, f"INSERT INTO {table} ({', '.join(map(quote_ident, names))}) VALUES ({casts})",
            **params)  # fmt: skip


def rows(url: str, table: str = "matrix") -> list[str]:
    """Return every row of ``table`` as its text form, in key order."""
    with connection(url) as conn:
        return list(
            conn.execute(
                sa.text(f"SELECT whole_row::text FROM {table} AS whole_row ORDER BY 1")
            ).scalars()
        )


def _matrix_database(pg_server: TestServer, *, filled: bool) -> Iterator[str]:
    name = pg_server.create_database()
    url = pg_server.url(name)
    run(url, *TYPES)
    create(url)
    if filled:
        fill(url)
        fill(url, "matrix_flat")
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def source(pg_server: TestServer) -> Iterator[str]:
    yield from _matrix_database(pg_server, filled=True)


@pytest.fixture
def target(pg_server: TestServer) -> Iterator[str]:
    yield from _matrix_database(pg_server, filled=False)


def export(url: str, out: Path, fmt: str = "copy", **options: Any) -> Path:
    with connection(url) as conn:
        export_bundle(
            conn, out, tables=["public.matrix", "public.matrix_flat"], format=fmt, **options
        )  # type: ignore[arg-type]
    return out


def load(url: str, bundle: Path, **options: Any) -> Any:
    with connection(url) as conn:
        report = import_bundle(conn, bundle, **options)
        conn.commit()
    return report


def rollback(url: str, run_id: int) -> None:
    with connection(url) as conn:
        rollback_run(conn, run_id)
        conn.commit()


def test_the_matrix_holds_what_users_typed(source: str) -> None:
    # The fixture's own sanity: padded char(n), bit(n), and the NULL row as expected.
    first = rows(source)[0]
    assert "AB   " in first and "10101010" in first and '"(1,,""x  "")"' in first
    assert rows(source) == rows(source, "matrix_flat")


@pytest.mark.parametrize("fmt", ["copy", "jsonl"])
def test_export_then_insert_gives_every_value_back_then_rollback_removes_them(
    source: str, target: str, tmp_path: Path, fmt: str
) -> None:
    bundle = export(source, tmp_path / "b", fmt)
    report = load(target, bundle)
    assert report.ok, report
    assert rows(target) == rows(source)  # staged: the table references itself
    assert rows(target, "matrix_flat") == rows(source, "matrix_flat")  # copied straight in
    rollback(target, report.run_id)
    assert rows(target) == [] and rows(target, "matrix_flat") == []


@pytest.mark.parametrize("fmt", ["copy", "jsonl"])
@pytest.mark.parametrize("mode", ["upsert", "replace"])
def test_upsert_and_replace_write_every_value_and_rollback_restores_the_old_ones(
    source: str, target: str, tmp_path: Path, fmt: str, mode: str
) -> None:
    # The target holds other values of every column in the same rows, and one row more.
    old = [dict(ROWS[2], id=1, parent=None), dict(ROWS[0], id=2, parent=1),
           dict(ROWS[3], id=3, parent=None), {"id": 4}, {"id": 5, "parent": 4}]  # fmt: skip
    for table in ("matrix", "matrix_flat"):
        fill(target, table, old)
    before = {table: rows(target, table) for table in ("matrix", "matrix_flat")}
    bundle = export(source, tmp_path / "b", fmt)
    report = load(target, bundle, mode=mode)
    assert report.ok, report
    for table in ("matrix", "matrix_flat"):
        written = rows(target, table)
        if mode == "upsert":
            assert written[:4] == rows(source, table) and written[4] == before[table][4]
        else:
            assert written == rows(source, table)
    rollback(target, report.run_id)
    assert {table: rows(target, table) for table in before} == before


@pytest.mark.parametrize("fmt", ["copy", "jsonl"])
def test_a_transform_on_one_column_leaves_every_other_value_alone(
    source: str, target: str, tmp_path: Path, fmt: str
) -> None:
    spec = TransformSpec.from_mapping(
        {"tables": {"matrix": {"note": "fake_name"}, "matrix_flat": {"note": "fake_name"}}},
        salt=b"s",
    )
    exported = export(source, tmp_path / "e", fmt, transforms=spec)
    plain = export(source, tmp_path / "p", fmt)
    strip = "SELECT (to_jsonb(whole_row) - 'note')::text FROM {} AS whole_row ORDER BY id"
    for bundle, transforms in ((exported, None), (plain, spec)):
        with connection(target) as conn:
            conn.execute(sa.text("TRUNCATE matrix, matrix_flat"))
            conn.commit()
        report = load(target, bundle, transforms=transforms)
        assert report.ok, report
        for table in ("matrix", "matrix_flat"):
            with connection(source) as src, connection(target) as dst:
                query = sa.text(strip.format(table))
                assert dst.execute(query).scalars().all() == src.execute(query).scalars().all()
            # every column but note, in its own text form
            assert [r.replace("first", "") for r in rows(target, table)] != []
        notes = _column(target, "matrix", "note")
        assert notes != _column(source, "matrix", "note") and all(notes[i] for i in (0, 2, 3))
        assert _other_columns(target) == _other_columns(source)


def _column(url: str, table: str, column: str) -> list[Any]:
    with connection(url) as conn:
        query = f"SELECT {quote_ident(column)}::text FROM {table} ORDER BY id"
        return list(conn.execute(sa.text(query)).scalars())


def _other_columns(url: str) -> list[list[Any]]:
    others = [c for c in ["id", "parent", *COLUMNS] if c != "note"]
    return [_column(url, "matrix", c) for c in others]


@pytest.mark.parametrize("mode", ["insert", "upsert"])
def test_csv_export_and_import_give_every_value_back(
    source: str, target: str, tmp_path: Path, mode: str
) -> None:
    file = tmp_path / "flat.csv"
    with connection(source) as conn:
        export_table(conn, "matrix_flat", file, format="csv")
    if mode == "upsert":
        fill(target, "matrix_flat", [{"id": 1, "c5": "Z"}, {"id": 3}])
    before = rows(target, "matrix_flat")
    with connection(target) as conn:
        report = import_csv(conn, "matrix_flat", file, mode=mode)  # type: ignore[arg-type]
        conn.commit()
    assert report.ok, report
    assert rows(target, "matrix_flat") == rows(source, "matrix_flat")
    rollback(target, report.run_id)
    assert rows(target, "matrix_flat") == before


def test_erase_and_its_rollback_give_every_value_back(source: str) -> None:
    before = rows(source)
    with connection(source) as conn:
        report = erase_user(conn, "matrix", "3")
        conn.commit()
    assert [r.split(",", 1)[0] for r in rows(source)] == ["(1", "(2", "(4"]  # 4 let go of 3
    rollback(source, report.run_id)
    assert rows(source) == before


def test_a_char_n_key_and_foreign_key_are_matched_whole(
    pg_server: TestServer, tmp_path: Path
) -> None:
    ddl = (
        "CREATE TABLE port (code char(5) PRIMARY KEY, name text)",
        "CREATE TABLE leg (id int PRIMARY KEY, dest char(5) REFERENCES port, flags bit(8))",
    )
    names = [pg_server.create_database() for _ in range(2)]
    src, dst = (pg_server.url(n) for n in names)
    try:
        run(src, *ddl, "INSERT INTO port VALUES ('SFO', 'San Francisco'), ('SEA  ', 'Seattle')",
            "INSERT INTO leg VALUES (1, 'SFO', B'00001111'), (2, 'SEA', B'11110000')")  # fmt: skip
        run(dst, *ddl, "INSERT INTO port VALUES ('SFOXX', 'other')")
        with connection(src) as conn:
            export_bundle(conn, tmp_path / "b")
        for mode in ("insert", "upsert"):
            report = load(dst, tmp_path / "b", mode=mode)
            assert report.ok, report
            assert rows(dst, "leg") == rows(src, "leg")
            got = set(rows(dst, "port"))
            assert set(rows(src, "port")) <= got and "(SFOXX,other)" in got
            rollback(dst, report.run_id)
        # erase by a char(n) key matches the whole key, not its first character
        with connection(dst) as conn:
            with pytest.raises(UserError, match="no"):
                erase_user(conn, "port", "SFOXY")
            report = erase_user(conn, "port", "SFOXX")
            conn.commit()
        assert rows(dst, "port") == []
    finally:
        for name in names:
            pg_server.drop_database(name)


def test_a_value_too_long_for_its_column_is_refused_by_row_never_cut(
    pg_url: str, tmp_path: Path
) -> None:
    run(pg_url, TYPES[3], "CREATE TABLE t (id int PRIMARY KEY, c char(5), b bit(3), d padded,"
                          " parent int REFERENCES t)")  # fmt: skip
    file = tmp_path / "t.csv"
    for bad in ("2,ABCDEFG,101,,1", "2,ABC,1011,,1", "2,ABC,101,ABCDE,1", "2,ABC,10,,1"):
        file.write_text(f"id,c,b,d,parent\n1,ABCDE,101,WXYZ,\n{bad}\n3,A,111,,1\n")
        for mode in ("insert", "upsert"):
            with connection(pg_url) as conn, pytest.raises(ImportFailed) as failed:
                import_csv(conn, "t", file, mode=mode)  # type: ignore[arg-type]
            errors = failed.value.report.tables[0].errors
            assert [(e.row, e.key) for e in errors] == [(2, {"id": "2"})], errors
            assert "too long" in errors[0].error or "does not match" in errors[0].error
            assert rows(pg_url, "t") == []
