"""The ``--where`` language: what it selects, what it rejects, and that nothing gets through.

The property tests throw quotes, semicolons, comments, crafted identifiers, backslashes
and unicode at the parser and run whatever compiles against a real table, watching every
statement sent: only parameterized SELECTs (and savepoints) reach the server, their text
never holds a literal from the input, and the tables are intact after.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from pgwarden.errors import UserError
from pgwarden.transfer.catalog import CatalogTable, load_catalog
from pgwarden.transfer.export.filters import check_filter, compile_filter, parse_where, table_clause

ROWS = [
    # id, name, status, views, author_id, deleted_at, flag, price
    (1, "alpha", "published", 150, 1, None, True, "9.99"),
    (2, "it's", "published", 50, 2, None, False, "0.50"),
    (3, "gamma", "draft", 500, 3, None, True, None),
    (4, "delta", "published", 10, 4, "2026-01-01", False, "1.00"),
    (5, 'say "hi"; --', "published", 99, 3, None, None, "100"),
    (6, "ünïcode\\x", "archived", 100, 7, None, True, "5"),
]


@pytest.fixture(scope="module")
def engine(pg_server: Any) -> Iterator[Engine]:
    name = pg_server.create_database()
    engine = sa.create_engine(
        pg_server.url(name).replace("postgresql://", "postgresql+psycopg://", 1),
        poolclass=sa.pool.NullPool,
    )
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TYPE state AS ENUM ('draft', 'published', 'archived');"
                "CREATE TABLE posts (id int PRIMARY KEY, name text, status state, views int,"
                " author_id bigint, deleted_at timestamptz, flag boolean, price numeric(8,2),"
                ' "Odd ""Col""" text, tags text[], doc jsonb, meta json);'
                "CREATE TABLE y (id int)"
            )
        )
        for row in ROWS:
            conn.execute(
                sa.text(
                    "INSERT INTO posts (id, name, status, views, author_id, deleted_at, flag,"
                    " price) VALUES (:i, :n, :s, :v, :a, :d, :f, :p)"
                ),
                dict(zip("insvadfp", row, strict=True)),
            )
    yield engine
    engine.dispose()
    pg_server.drop_database(name)


@pytest.fixture(scope="module")
def posts(engine: Engine) -> CatalogTable:
    with engine.connect() as conn:
        return load_catalog(conn).table("public.posts")


def matching(engine: Engine, table: CatalogTable, source: str) -> list[int]:
    target = table_clause(table)
    compiled = compile_filter(source, table, target)
    with engine.connect() as conn:
        check_filter(conn, [compiled])
        query = sa.select(target.c.id).where(compiled.clause).order_by(target.c.id)
        return list(conn.execute(query).scalars())


@pytest.mark.parametrize(
    ("source", "ids"),
    [
        ("status = 'published' and (views >= 100 or author_id in (1, 2, 3))"
         " and deleted_at is null", [1, 2, 5]),
        ("name = 'it''s'", [2]),
        ("name like '%\"hi\"%'", [5]),
        ("NAME ILIKE 'ALPHA'", [1]),
        ("not (views < 100) and flag", None),  # a bare column is not a predicate
        ("flag = true or flag is null", [1, 3, 5, 6]),
        ("status not in ('draft', 'archived')", [1, 2, 4, 5]),
        ("price >= 5 and price <> 100", [1, 6]),
        ("deleted_at >= '2025-12-31' and deleted_at < '2026-01-02'", [4]),
        ('"Odd ""Col""" is null and id != 6 and name not like \'%a%\'', [2]),
        ("price > -1.5e3 and id <= 2", [1, 2]),
        ("doc = '{}' or tags = '{a,b}'", []),
        ("tags is null and doc is null and id = 3", [3]),
    ],
)  # fmt: skip
def test_filters_select_the_rows_they_say(
    engine: Engine, posts: CatalogTable, source: str, ids: list[int] | None
) -> None:
    if ids is None:
        with pytest.raises(UserError, match="expected an operator"):
            matching(engine, posts, source)
    else:
        assert matching(engine, posts, source) == ids


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("status = 'x'; DROP TABLE y", "unexpected character ';' at position 13"),
        ('"x"; DROP TABLE y', "unexpected character ';' at position 4"),
        ("views = 1 -- comment", "unexpected character '-' at position 11"),
        ("views /* c */ = 1", "unexpected character '/' at position 7"),
        ("views = $$1$$", "unexpected character '$' at position 9"),
        ("name = E'\\x41'", "expected a value"),
        ("pg_sleep(1) = 1", "unknown column 'pg_sleep'"),
        ("views = null", "write `is null`"),
        ("views == 1", "expected a value"),
        ("views in ()", "expected a value"),
        ("views between 1 and 2", "expected an operator, found 'between'"),
        ("(views = 1", "expected ')'"),
        ("views = 1)", "expected and, or, or the end"),
        ("name = 'open", "unterminated string at position 8"),
        ('"unterminated = 1', "unterminated quoted identifier"),
        ('"" = 1', "empty quoted identifier"),
        ("views = 'many'", "does not fit column 'views' (integer)"),
        ("status = 'gone'", "does not fit column 'status'"),
        ("meta = '{}'", "does not fit column 'meta' (json) with =: "),  # json has no =
        ("views > 1.5e3", "does not fit column 'views'"),
        ("name like 'ends in \\'", "does not fit column 'name' (text) with LIKE"),
        ("name = 'a\x00b'", "a NUL character, which no value can hold at position 10"),
        ("", "expected a column name"),
        ("(" * 100 + "views = 1" + ")" * 100, "nested deeper than"),
    ],
)
def test_mistakes_name_the_token_and_position(
    engine: Engine, posts: CatalogTable, source: str, message: str
) -> None:
    with pytest.raises(UserError, match=_escape(message)):
        matching(engine, posts, source)


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_a_table_prefix_routes_the_filter() -> None:
    assert parse_where("public.posts: views > 1") == ("public.posts", " views > 1")
    assert parse_where("posts:views > 1") == ("posts", "views > 1")
    assert parse_where("name = 'a: b'") == (None, "name = 'a: b'")


# -- property tests -------------------------------------------------------------------

# Pieces that make SQL injection: quotes, statement ends, comments, casts, dollar quotes.
NASTY = st.sampled_from(
    ["'", "''", '"', '""', ";", "--", "/*", "*/", "\\", "$$", "::", "E'", "%s", "%(x)s",
     "\x00", "\n", "ü", "☃", "DROP TABLE y", "pg_sleep(1)", "1=1", " or ", " and ", "(",
     ")", ",", "null", "true", "not", "in", "like", "is", "views", "name", "id", "=",
     "<>", ">=", "'x'", "1", "-2.5e3", "\"Odd \"\"Col\"\"\"", "\"x\"; DROP TABLE y --"]
)  # fmt: skip
RANDOM_FILTERS = st.lists(NASTY | st.text(max_size=6), max_size=12).map("".join)

# String values for well-formed filters: anything at all, kept apart by a marker.
VALUES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20
)


class Watch:
    """Record every statement sent on an engine."""

    def __init__(self, engine: Engine) -> None:
        self.statements: list[str] = []
        sa.event.listen(engine, "before_cursor_execute", self.record)
        self.engine = engine

    def record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)

    def close(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self.record)


@pytest.fixture
def watch(engine: Engine) -> Iterator[Watch]:
    watcher = Watch(engine)
    yield watcher
    watcher.close()


def run_filter(conn: Connection, table: CatalogTable, source: str) -> str | None:
    """Compile and run ``source``; return its SQL, or None when it was rejected."""
    target = table_clause(table)
    try:
        compiled = compile_filter(source, table, target)
    except UserError:
        return None
    query = sa.select(sa.func.count()).select_from(target).where(compiled.clause)
    sql = str(query.compile(dialect=postgresql.psycopg.dialect()))  # type: ignore[attr-defined]
    with conn.begin():
        try:
            check_filter(conn, [compiled])
        except UserError:
            return sql
        conn.execute(query).scalar_one()
    return sql


def assert_only_parameterized_selects(statements: list[str]) -> None:
    for statement in statements:
        head = statement.lstrip().split(None, 1)[0].upper()
        assert head in {"SELECT", "SAVEPOINT", "RELEASE", "ROLLBACK"}, statement
        # every value is a bound parameter: no quote, statement end or comment in the text
        assert "'" not in statement and ";" not in statement, statement
        assert "--" not in statement and "/*" not in statement, statement


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(source=RANDOM_FILTERS)
def test_random_input_is_rejected_or_runs_as_a_parameterized_select(
    engine: Engine, posts: CatalogTable, watch: Watch, source: str
) -> None:
    watch.statements.clear()
    with engine.connect() as conn:
        run_filter(conn, posts, source)
        assert_only_parameterized_selects(watch.statements)
        assert conn.execute(sa.text("SELECT count(*) FROM posts")).scalar_one() == len(ROWS)
        assert conn.execute(sa.text("SELECT to_regclass('y') IS NOT NULL")).scalar_one()


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    value=VALUES,
    column=st.sampled_from(["name", '"Odd ""Col"""', "status"]),
    operator=st.sampled_from(["=", "!=", "like", "ilike", "not like", "in", "<"]),
)
def test_any_string_value_is_bound_never_written_into_the_sql(
    engine: Engine, posts: CatalogTable, watch: Watch, value: str, column: str, operator: str
) -> None:
    def source_for(text: str) -> str:
        literal = "'" + text.replace("'", "''") + "'"
        return (
            f"{column} {operator} ({literal})"
            if operator == "in"
            else f"{column} {operator} {literal}"
        )

    source = source_for(value)
    watch.statements.clear()
    with engine.connect() as conn:
        sql = run_filter(conn, posts, source)
        assert sql is not None  # well-formed: never rejected by the parser
        assert_only_parameterized_selects(watch.statements)
        if column != "status" and "like" not in operator:  # any text is a valid text value
            assert any("count(*)" in s for s in watch.statements), watch.statements
        # the SQL is the same whatever the value: values travel only as parameters
        assert sql == run_filter(conn, posts, source_for("zz"))
        if column == "name" and operator == "=":
            expected = conn.execute(sa.text("SELECT id FROM posts WHERE name = :v"), {"v": value})
            assert matching(engine, posts, source) == sorted(expected.scalars().all())
