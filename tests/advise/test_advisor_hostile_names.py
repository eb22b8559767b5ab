"""The index advisor on a schema of hostile names: the query is read, the index is
recommended on the real table and column, and its SQL and migration run as written."""

from __future__ import annotations

import sqlalchemy as sa
from hypothesis import given
from sqlalchemy.engine import Engine

from hostile_names import HostileSchema, examples, hostile_schemas, quoted, raw
from pgwarden.advise import advise_indexes, alembic_migration


@examples(8)
@given(names=hostile_schemas)
def test_the_advisor_recommends_on_hostile_names(pg_engine: Engine, names: HostileSchema) -> None:
    table = names.qualified(names.table)
    query = f"SELECT * FROM {table} WHERE {quoted(names.reference)} = $1"
    with pg_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        names.build(conn)
        try:
            raw(conn, f"DROP INDEX {names.qualified(names.invalid)}")
            # Ten times the rows: at 3,000 a scratch copy's costs sometimes left the
            # index short of paying, and the recommendation came and went between runs.
            raw(
                conn,
                f"INSERT INTO {table} SELECT g, g % 1000, 1 + g % 1000, 'x'"
                " FROM generate_series(3001, 30000) AS g",
            )
            raw(conn, f"ANALYZE {table}")
            advice = advise_indexes(conn, queries=[query], method="scratch", min_calls=0)
            assert advice.skipped == []
            (index,) = advice.recommendations
            assert (index.schema, index.table, index.columns) == (
                names.schema,
                names.table,
                [names.reference],
            )
            assert [served.sql for served in index.queries] == [query]
            compile(alembic_migration([index]), "migration.py", "exec")
            raw(conn, index.create_sql)
            built = conn.execute(
                sa.text(
                    "SELECT i.indrelid::regclass::text, a.attname FROM pg_index AS i"
                    " JOIN pg_attribute AS a ON a.attrelid = i.indrelid"
                    " AND a.attnum = i.indkey[0]"
                    " WHERE i.indexrelid = to_regclass(:name)"
                ),
                {"name": f"{quoted(names.schema)}.{quoted(index.name)}"},
            ).one()
            assert tuple(built) == (
                conn.execute(sa.text("SELECT to_regclass(:t)::text"), {"t": table}).scalar(),
                names.reference,
            )
            raw(conn, index.drop_sql)
        finally:
            names.drop(conn)
