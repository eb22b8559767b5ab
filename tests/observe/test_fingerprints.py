from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden.observe import fingerprint, normalize


def test_literals_and_parameters_do_not_change_the_fingerprint() -> None:
    shapes = [
        "SELECT * FROM users WHERE id = 1",
        "SELECT * FROM users WHERE id = 42",
        "select *   from users where id = %(id_1)s",
        "SELECT * FROM users WHERE id = %s",
    ]
    assert len({fingerprint(s) for s in shapes}) == 1
    assert fingerprint("SELECT * FROM users WHERE id IN (1, 2, 3)") == fingerprint(
        "SELECT * FROM users WHERE id IN (%(a)s)"
    )


def test_different_shapes_differ() -> None:
    assert fingerprint("SELECT * FROM users WHERE id = 1") != fingerprint(
        "SELECT * FROM users WHERE email = 'a'"
    )
    assert fingerprint("SELECT 1") != fingerprint("SELECT 1 FROM users")


def test_text_that_does_not_parse_still_gets_a_stable_id() -> None:
    weird = "THIS IS NOT SQL 12 'x'"
    assert fingerprint(weird) == fingerprint("THIS IS NOT SQL 99 'y'")
    assert len(fingerprint(weird)) == 16


def test_normalize_replaces_literals() -> None:
    assert normalize("SELECT * FROM t WHERE a = 5 AND b = 'x'") == (
        "SELECT * FROM t WHERE a = $1 AND b = $2"
    )


def test_fingerprints_match_pg_stat_statements_query_text(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        preloaded = conn.execute(sa.text("SHOW shared_preload_libraries")).scalar_one()
        if "pg_stat_statements" not in preloaded:
            pytest.skip("this server does not preload pg_stat_statements")
        conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
        conn.commit()
        statement = "SELECT relname FROM pg_class WHERE relpages > %(pages)s AND relname <> 'x'"
        conn.exec_driver_sql(statement, {"pages": 3})
        conn.commit()
        texts = (
            conn.execute(
                sa.text(
                    "SELECT query FROM pg_stat_statements"
                    " WHERE query LIKE 'SELECT relname FROM pg_class WHERE relpages >%'"
                )
            )
            .scalars()
            .all()
        )
    assert texts, "pg_stat_statements did not record the statement"
    assert {fingerprint(text) for text in texts} == {fingerprint(statement)}
