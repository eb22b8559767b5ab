"""Names given by users: resolved through the catalog, never pasted into SQL."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from maintain_support import Database
from pgwarden.errors import UserError
from pgwarden.maintain import analyze, reindex, resolve_tables, vacuum

HOSTILE = [
    "x; DROP TABLE victim",
    "victim; --",
    "victim /* comment */",
    "'victim'",
    "victim'; DROP TABLE victim; --",
    'victim"; DROP TABLE victim; --',
    '"victim',
    "nosuch",
    "nosuch.victim",
    "a.b.c.d",
    "otherdb.public.victim",
    "",
    "   ",
    "1234",
    "victim_pkey",  # an index, not a table
    "victim_view",  # a view, not a table
]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_bad_or_hostile_name_is_unknown_and_nothing_runs(
    db: Database, pg_engine: Engine, name: str
) -> None:
    db.run(
        "CREATE TABLE victim (id int PRIMARY KEY)",
        "CREATE VIEW victim_view AS SELECT 1",
        "CREATE TABLE other (id int)",
    )
    with pg_engine.connect() as conn, pytest.raises(UserError) as error:
        vacuum(conn, ["other", name])
    assert error.value.exit_code == 2
    assert "Nothing was run" in error.value.message
    assert repr(name) in error.value.message
    assert db.scalar("SELECT to_regclass('victim') IS NOT NULL")
    assert db.stat("other", "last_vacuum") is None


def test_every_bad_name_is_listed_at_once(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn, pytest.raises(UserError) as error:
        analyze(conn, ["one", "two"])
    assert "unknown tables: 'one' (no such name); 'two' (no such name)" in error.value.message


def test_a_bad_name_in_a_transaction_leaves_it_usable(db: Database, pg_engine: Engine) -> None:
    db.run("CREATE TABLE t (id int)")
    with pg_engine.begin() as conn:
        with pytest.raises(UserError):
            resolve_tables(conn, ["t /* c */", "a.b.c.d"])
        [table] = resolve_tables(conn, ["t"])
    assert table.qualified == "public.t" and table.size_exact


@pytest.mark.parametrize(
    ("created", "given", "statement"),
    [
        (
            '"x; DROP TABLE victim"',
            '"x; DROP TABLE victim"',
            'VACUUM public."x; DROP TABLE victim"',
        ),
        ('"a""b"', '"a""b"', 'VACUUM public."a""b"'),
        ('"Order Items"', 'public."Order Items"', 'VACUUM public."Order Items"'),
        ('"x:y %s %(z)s"', '"x:y %s %(z)s"', 'VACUUM public."x:y %s %(z)s"'),
        ("sales.orders", "SALES.Orders", "VACUUM sales.orders"),
        ('"select"', '"select"', 'VACUUM public."select"'),
        ("plain", "  plain  ", "VACUUM public.plain"),
    ],
)
def test_odd_names_resolve_and_are_quoted(
    db: Database, pg_engine: Engine, created: str, given: str, statement: str
) -> None:
    db.run(
        "CREATE SCHEMA sales", "CREATE TABLE victim (id int)", f"CREATE TABLE {created} (id int)"
    )
    with pg_engine.connect() as conn:
        report = vacuum(conn, [given])
    assert report.ok, report.failed
    assert report.operations[0].statement == statement
    assert db.stat(created, "last_vacuum") is not None
    assert db.scalar("SELECT to_regclass('victim') IS NOT NULL")


def test_a_table_named_twice_is_done_once(db: Database, pg_engine: Engine) -> None:
    db.run("CREATE TABLE t (id int)")
    with pg_engine.connect() as conn:
        report = vacuum(conn, ["t", "public.t", '"t"'], dry_run=True)
    assert [op.statement for op in report.operations] == ["VACUUM public.t"]


def test_a_table_given_as_an_index_is_refused(db: Database, pg_engine: Engine) -> None:
    db.run("CREATE TABLE t (id int PRIMARY KEY)")
    with pg_engine.connect() as conn, pytest.raises(UserError, match="a table, not an index"):
        reindex(conn, indexes=["t"])


def test_a_partitioned_table_counts_its_partitions(db: Database, pg_engine: Engine) -> None:
    db.run(
        "CREATE TABLE p (id int) PARTITION BY RANGE (id)",
        "CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (1000)",
        "CREATE TABLE p2 PARTITION OF p FOR VALUES FROM (1000) TO (2000)",
        "INSERT INTO p SELECT generate_series(0, 1999)",
    )
    with pg_engine.connect() as conn:
        [parent] = resolve_tables(conn, ["p"])
    with pg_engine.connect() as conn:
        everything = vacuum(conn, dry_run=True)
    partitions = db.scalar("SELECT pg_total_relation_size('p1') + pg_total_relation_size('p2')")
    assert parent.kind == "partitioned table" and parent.size_bytes == partitions > 0
    # every table: the partitions, not the parent (which would do them again)
    assert [op.target.name for op in everything.operations] == ["p1", "p2"]
