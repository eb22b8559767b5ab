"""Record every INSERT, UPDATE and DELETE of chosen tables in an audit log, by trigger.

The trigger runs in the database, so raw SQL, bulk statements and other programs are
recorded as well as the ORM. Each audit row names the table, the row's primary key (as a
JSON object), the action, the whole row before and after (as JSONB), who did it and
when. "Who" is whatever the application passed to :func:`set_actor` in the same
transaction::

    audit_log = audit_log_table(Base.metadata)
    install_audit(Base.metadata, [Content.__table__], audit_table=audit_log)

    with Session(engine) as session, session.begin():
        set_actor(session, "alice")
        session.add(Content(title="Hello"))
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    MetaData,
    Table,
    Text,
    event,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.sql import FromClause

from pgwarden._sql import quote_identifier
from pgwarden.errors import UserError
from pgwarden.orm import _ddl

__all__ = [
    "AUDIT_FUNCTION_SQL",
    "audit_log_table",
    "audit_trigger_sql",
    "install_audit",
    "set_actor",
]

AUDIT_TABLE = "audit_log"
AUDIT_TRIGGER = "pgwarden_audit"

# The audit table comes as the trigger's argument: a quoted, schema-qualified name, fixed
# when the trigger is created. The function pins its search_path, so nothing a writer
# puts on theirs (a temp table called audit_log, a schema shadowing to_jsonb, "-" or
# current_setting) is consulted: only pg_catalog, then pg_temp, which is never searched
# for functions or operators and never reached for the qualified log. A name without a
# schema (a trigger made before names were qualified) means the audited table's schema.
# The primary key columns come from the catalog, so the same function serves every table.
# An UPDATE that changes nothing but updated_at (which the Timestamps trigger moves on
# every UPDATE) is not recorded.
AUDIT_FUNCTION_SQL = """\
CREATE OR REPLACE FUNCTION pgwarden_audit()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    log_name text[] := parse_ident(TG_ARGV[0]);
    old_row jsonb;
    new_row jsonb;
    row_pk jsonb;
BEGIN
    IF cardinality(log_name) = 1 THEN
        log_name := ARRAY[TG_TABLE_SCHEMA::text, log_name[1]];
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        old_row := to_jsonb(OLD);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        new_row := to_jsonb(NEW);
    END IF;
    IF TG_OP = 'UPDATE' AND (old_row - 'updated_at') = (new_row - 'updated_at') THEN
        RETURN NULL;
    END IF;
    SELECT coalesce(jsonb_object_agg(a.attname, coalesce(new_row, old_row) -> a.attname), '{}')
    INTO row_pk
    FROM pg_index AS i
    JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
    WHERE i.indrelid = TG_RELID
      AND i.indisprimary;
    EXECUTE 'INSERT INTO ' || quote_ident(log_name[1]) || '.' || quote_ident(log_name[2])
        || ' (table_name, row_pk, action, old_values, new_values, actor)'
        || ' VALUES ($1, $2, $3, $4, $5, $6)'
    USING TG_TABLE_NAME, row_pk, TG_OP, old_row, new_row,
        nullif(current_setting('pgwarden.actor', true), '');
    RETURN NULL;
END
$$"""

# Qualify the log's name as the session running the migration sees it (a temporary
# table is never the log), then create the trigger with that name as its argument.
_RESOLVE_AND_CREATE = """\
DECLARE
    log_schema text;
BEGIN
    SELECT n.nspname INTO log_schema
    FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE c.oid = pg_catalog.to_regclass({name})
      AND c.relpersistence <> 't';
    log_schema := coalesce(log_schema, pg_catalog.current_schema());
    IF log_schema IS NULL THEN
        RAISE EXCEPTION 'no schema to find the audit table in: the search_path is empty';
    END IF;
    EXECUTE {create}
        || pg_catalog.quote_literal(
            pg_catalog.quote_ident(log_schema) || '.' || pg_catalog.quote_ident({table}))
        || ')';
END"""

_SET_ACTOR = text("SELECT set_config('pgwarden.actor', :actor, true)")


def audit_log_table(metadata: MetaData, *, schema: str | None = None) -> Table:
    """Define the ``audit_log`` table in ``metadata`` and return it.

    ``row_pk`` is the primary key of the audited row as a JSON object (``{"id": 7}``),
    indexed with ``table_name`` so that the history of one row is a cheap lookup:
    ``WHERE table_name = 'content' AND row_pk = '{"id": 7}'``.
    """
    return Table(
        AUDIT_TABLE,
        metadata,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("table_name", Text, nullable=False),
        Column("row_pk", JSONB, nullable=False),
        Column("action", Text, nullable=False),
        Column("old_values", JSONB, nullable=True),
        Column("new_values", JSONB, nullable=True),
        Column("actor", Text, nullable=True),
        Column("at", DateTime(timezone=True), server_default=func.now(), nullable=False),
        CheckConstraint("action IN ('INSERT', 'UPDATE', 'DELETE')", name="ck_audit_log_action"),
        Index("ix_audit_log_table_name_row_pk", "table_name", "row_pk"),
        schema=schema,
    )


def audit_trigger_sql(
    table: str,
    *,
    schema: str | None = None,
    audit_schema: str | None = None,
    audit_table: str = AUDIT_TABLE,
) -> list[str]:
    """Return the statements that audit every row change of ``table``.

    They create (or replace) the function ``pgwarden_audit()``, then drop and create
    the trigger, so they can run again safely. ``audit_schema`` and ``audit_table``
    name the log table. The trigger always names it with its schema: without
    ``audit_schema``, the schema is found when these statements run (that of the
    ``audit_table`` the running session sees, else its current schema, where an
    unqualified CREATE TABLE would put it), never by the session that writes. In an
    Alembic migration::

        for statement in audit_trigger_sql("content"):
            op.execute(statement)
    """
    target = _ddl.table_name(table, schema)
    trigger = quote_identifier(AUDIT_TRIGGER)
    create = (
        f"CREATE TRIGGER {trigger}\n"
        f"AFTER INSERT OR UPDATE OR DELETE ON {target}\n"
        "FOR EACH ROW\n"
        "EXECUTE FUNCTION pgwarden_audit("
    )
    if audit_schema is not None:
        log = _ddl.table_name(audit_table, audit_schema, plain=True)
        create_trigger = f"{create}{_ddl.string_literal(log)})"
    else:
        create_trigger = "DO " + _ddl.dollar_quote(
            _RESOLVE_AND_CREATE.format(
                name=_ddl.string_literal(quote_identifier(audit_table, plain=True)),
                create=_ddl.string_literal(create),
                table=_ddl.string_literal(audit_table),
            )
        )
    return [
        AUDIT_FUNCTION_SQL,
        f"DROP TRIGGER IF EXISTS {trigger} ON {target}",
        create_trigger,
    ]


def install_audit(metadata: MetaData, tables: Iterable[FromClause], *, audit_table: Table) -> None:
    """Make ``metadata.create_all`` (or ``Table.create``) create audit triggers on ``tables``.

    ``tables`` are Tables, such as ``Content.__table__``; ``audit_table`` is the table
    from :func:`audit_log_table`, which cannot audit itself.
    """
    for clause in tables:
        table = _ddl.as_table(clause)
        if table is audit_table:
            raise UserError(
                "the audit log cannot audit itself.", hint="Leave the audit table out of tables."
            )
        if table.metadata is not metadata:
            raise UserError(
                f"table {table.fullname} belongs to another MetaData.",
                hint="Pass the MetaData the audited tables were defined in.",
            )
        statements = audit_trigger_sql(
            table.name,
            schema=table.schema,
            audit_schema=audit_table.schema,
            audit_table=audit_table.name,
        )
        event.listen(table, "after_create", _ddl.creator(statements))


def set_actor(target: Session | Connection, actor: str | None) -> None:
    """Name who makes the changes of the current transaction, for the audit log.

    The setting is transaction-local: it lasts until the transaction commits or rolls
    back, so a pooled connection never carries one request's actor into the next. Call
    it after the transaction begins and before the changes are flushed. ``None`` (or
    never calling it) records the actor as NULL. Async code runs it with
    ``await session.run_sync(set_actor, "alice")``.
    """
    target.execute(_SET_ACTOR, {"actor": actor})
