"""Names: quoted once, and a table name read the way PostgreSQL reads it, everywhere."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden._sql import find_relation, qualified, quote_identifier, resolve_table
from pgwarden.errors import UserError
from pgwarden.maintain import resolve_tables

# What each spelling means to PostgreSQL, with public and app on the search path.
SPELLINGS = [
    ("users", ("public", "users")),
    ("Users", ("public", "users")),  # unquoted: folded to lower case
    ("USERS", ("public", "users")),
    ('"Users"', ("public", "Users")),  # quoted: case kept
    ('public."Users"', ("public", "Users")),
    ("public.users", ("public", "users")),
    ("accounts", ("app", "accounts")),  # found on the search path
    ("App.Accounts", ("app", "accounts")),
    ('"a.b"', ("public", "a.b")),  # a quoted dot is part of the name
    ('app."a.b"', ("app", "a.b")),
]


@pytest.fixture
def engine(pg_engine: Engine) -> Engine:
    with pg_engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA app"))
        for statement in [
            "CREATE TABLE public.users (id int)",
            'CREATE TABLE public."Users" (id int)',
            'CREATE TABLE public."a.b" (id int)',
            "CREATE TABLE app.accounts (id int)",
            'CREATE TABLE app."a.b" (id int)',
            "CREATE VIEW public.user_names AS SELECT 1 AS id",
        ]:
            conn.execute(sa.text(statement))
        database = conn.execute(sa.text("SELECT current_database()")).scalar_one()
        conn.execute(
            sa.text(f"ALTER DATABASE {quote_identifier(database)} SET search_path = public, app")
        )
    pg_engine.dispose()  # new sessions read the database's search_path
    return pg_engine


@pytest.mark.parametrize(("name", "meant"), SPELLINGS)
def test_every_command_reads_a_table_name_as_postgresql_does(
    engine: Engine, name: str, meant: tuple[str, str]
) -> None:
    with engine.connect() as conn:
        assert resolve_table(conn, name) == meant
        # maintain's --table goes through the same resolver
        (table,) = resolve_tables(conn, [name])
        assert (table.schema, table.name) == meant
        # the name pgwarden prints for it resolves back to the same table
        assert resolve_table(conn, qualified(*meant, plain=True)) == meant


@pytest.mark.parametrize(
    "name", ["nosuch", "app.users", '"users', "x; DROP TABLE users", "", "1234", "a.b.c.d"]
)
def test_a_name_that_is_no_table_is_a_user_error_with_a_hint(engine: Engine, name: str) -> None:
    with engine.connect() as conn:
        with pytest.raises(UserError) as error:
            resolve_table(conn, name)
        assert "pgwarden analyze --dry-run" in (error.value.hint or "")
        assert conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one() == 0


def test_a_view_is_found_but_is_not_a_table(engine: Engine) -> None:
    with engine.connect() as conn:
        found = find_relation(conn, "user_names")
        assert found is not None and found.kind == "v"
        with pytest.raises(UserError, match="is a view, not a table"):
            resolve_table(conn, "user_names")


@pytest.mark.parametrize("name", ["a%b", "a:b", 'a"b', "Mixed Case", "select"])
def test_a_hostile_name_quoted_for_sql_and_for_people_names_the_same_table(
    pg_engine: Engine, name: str
) -> None:
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {quote_identifier(name)} (id int)"))
        plain = quote_identifier(name, plain=True)
        assert resolve_table(conn, plain) == ("public", name)
        assert (
            conn.execute(sa.text(f"SELECT count(*) FROM {qualified('public', name)}")).scalar() == 0
        )
