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

# The audit table comes as the trigger's argument (a quoted, possibly qualified name);
# the primary key columns come from the catalog, so the same function serves every table.
# An UPDATE that changes nothing but updated_at (which the Timestamps trigger moves on
# every UPDATE) is not recorded.
AUDIT_FUNCTION_SQL = """\
CREATE OR REPLACE FUNCTION pgwarden_audit()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    audit_table regclass := TG_ARGV[0]::regclass;
    old_row jsonb;
    new_row jsonb;
    row_pk jsonb;
BEGIN
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
    EXECUTE 'INSERT INTO ' || audit_table::text
        || ' (table_name, row_pk, action, old_values, new_values, actor)'
        || ' VALUES ($1, $2, $3, $4, $5, $6)'
    USING TG_TABLE_NAME, row_pk, TG_OP, old_row, new_row,
        nullif(current_setting('pgwarden.actor', true), '');
    RETURN NULL;
END
$$"""

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
    name the log table; unqualified, it is looked up on the ``search_path`` of the
    session that writes. In an Alembic migration::

        for statement in audit_trigger_sql("content"):
            op.execute(statement)
    """
    target = _ddl.table_name(table, schema)
    trigger = _ddl.quote(AUDIT_TRIGGER)
    log = _ddl.string_literal(_ddl.table_name(audit_table, audit_schema))
    return [
        AUDIT_FUNCTION_SQL,
        f"DROP TRIGGER IF EXISTS {trigger} ON {target}",
        f"CREATE TRIGGER {trigger}\n"
        f"AFTER INSERT OR UPDATE OR DELETE ON {target}\n"
        "FOR EACH ROW\n"
        f"EXECUTE FUNCTION pgwarden_audit({log})",
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
