"""The migration the advisor writes: SQL, and an Alembic migration that runs."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy.engine import Engine

from pgwarden.advise import IndexKey, IndexRecommendation, alembic_migration


def recommendation(**changes: object) -> IndexRecommendation:
    fields: dict[str, object] = {
        "schema": "public",
        "table": "orders",
        "name": "ix_orders_created_at_where_status",
        "keys": [IndexKey("created_at", descending=True), IndexKey("Total")],
        "predicate": "status = 'pending'",
        "queries": [],
        "size_bytes": 8192,
        "size_source": "statistics",
        "write_heavy": False,
    }
    fields.update(changes)
    return IndexRecommendation(**fields)  # type: ignore[arg-type]


def test_create_sql_quotes_names_only_where_needed() -> None:
    index = recommendation(schema="Sales Data", table="order")
    assert index.create_sql == (
        'CREATE INDEX CONCURRENTLY ix_orders_created_at_where_status ON "Sales Data"."order"'
        " (created_at DESC, \"Total\") WHERE status = 'pending';"
    )
    assert (
        index.drop_sql == 'DROP INDEX CONCURRENTLY "Sales Data".ix_orders_created_at_where_status;'
    )


def test_the_alembic_migration_builds_and_drops_the_index_concurrently(shop: Engine) -> None:
    index = recommendation(keys=[IndexKey("created_at", descending=True), IndexKey("total")])
    body = alembic_migration([index], down_revision="abc123", revision="def456")
    assert 'down_revision = "abc123"' in body and 'revision = "def456"' in body
    assert "with op.get_context().autocommit_block():" in body
    assert "postgresql_concurrently=True" in body
    assert "postgresql_where=sa.text(\"status = 'pending'\")" in body
    module: dict[str, object] = {}
    exec(compile(body, "migration.py", "exec"), module)  # noqa: S102 - the text under test
    with shop.connect() as conn:
        context = MigrationContext.configure(conn)
        with context.begin_transaction(), Operations.context(context):
            module["upgrade"]()  # type: ignore[operator]
        definition = conn.execute(
            sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"),
            {"name": index.name},
        ).scalar_one()
        assert definition == (
            "CREATE INDEX ix_orders_created_at_where_status ON public.orders"
            " USING btree (created_at DESC, total) WHERE (status = 'pending'::text)"
        )
        with context.begin_transaction(), Operations.context(context):
            module["downgrade"]()  # type: ignore[operator]
        gone = conn.execute(sa.text("SELECT to_regclass(:name)"), {"name": index.name}).scalar()
        assert gone is None


def test_a_migration_with_nothing_to_do_is_still_valid_python() -> None:
    body = alembic_migration([])
    compile(body, "migration.py", "exec")
    assert "down_revision = None" in body


def test_a_migration_of_any_index_name_is_valid_python() -> None:
    import ast
    import warnings

    name = 'ix_back\\slash_new\\nline_"""_end'
    body = alembic_migration([recommendation(name=name)], revision="def456")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an invalid escape in the docstring is an error
        module = ast.parse(body)
    assert f'- "{name}"' in (ast.get_docstring(module) or "")
    calls = [
        n
        for n in ast.walk(module)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr in ("create_index", "drop_index")
    ]
    assert [c.args[0].value for c in calls] == [name, name]  # type: ignore[attr-defined]
