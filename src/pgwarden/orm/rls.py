"""Isolate tenants with PostgreSQL row-level security, keyed on a per-transaction setting.

The policy lets a session see and write only the rows whose ``tenant_id`` equals the
setting ``pgwarden.tenant_id``; with no tenant set, it sees nothing and can write
nothing. Because the database enforces it, a forgotten ``WHERE`` or a hand-written query
cannot leak another tenant's rows::

    install_rls(Note.__table__)          # or rls_policy_sql("note") in a migration

    with Session(engine) as session, session.begin():
        set_tenant(session, 42)
        session.scalars(select(Note)).all()   # tenant 42's notes only

Row-level security does not apply to superusers nor to roles with ``BYPASSRLS``: the
application must connect as an ordinary role. ``FORCE ROW LEVEL SECURITY`` makes it
apply to the table's owner too, so an application that owns its tables is covered.
"""

from __future__ import annotations

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.sql import FromClause

from pgwarden._sql import quote_identifier
from pgwarden.errors import UserError
from pgwarden.orm import _ddl

__all__ = ["RLS_CASTS", "install_rls", "rls_policy_sql", "set_tenant"]

RLS_CASTS = frozenset({"bigint", "integer", "smallint", "text", "uuid"})

_SET_TENANT = text("SELECT set_config(:setting, :tenant, true)")


def rls_policy_sql(
    table: str,
    *,
    column: str = "tenant_id",
    setting: str = "pgwarden.tenant_id",
    cast: str = "bigint",
    schema: str | None = None,
    policy: str = "tenant_isolation",
) -> list[str]:
    """Return the statements that confine ``table`` to the rows of the current tenant.

    The policy compares ``column`` with the setting, cast to ``cast`` (one of
    :data:`RLS_CASTS`), for reads (``USING``) and writes (``WITH CHECK``). Names are
    quoted and the setting and cast are checked, so no argument can add SQL. The
    statements drop the policy before creating it and can run again. In an Alembic
    migration::

        for statement in rls_policy_sql("note"):
            op.execute(statement)
    """
    _ddl.check_setting(setting)
    cast = cast.lower() if isinstance(cast, str) else cast
    if cast not in RLS_CASTS:
        raise UserError(
            f"{cast!r} is not a type a tenant id can be cast to.",
            hint=f"Use one of {', '.join(sorted(RLS_CASTS))}.",
        )
    target = _ddl.table_name(table, schema)
    name = quote_identifier(policy)
    condition = (
        f"{quote_identifier(column)} = NULLIF(current_setting('{setting}', true), '')::{cast}"
    )
    return [
        f"ALTER TABLE {target} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {target} FORCE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS {name} ON {target}",
        f"CREATE POLICY {name} ON {target}\nUSING ({condition})\nWITH CHECK ({condition})",
    ]


def install_rls(
    table: FromClause,
    *,
    column: str = "tenant_id",
    setting: str = "pgwarden.tenant_id",
    cast: str = "bigint",
    policy: str = "tenant_isolation",
) -> None:
    """Make ``table.create`` (and ``metadata.create_all``) add the tenant policy to it.

    ``table`` is a Table, such as ``Note.__table__``; ``column`` is the tenant column's
    attribute key or its name in the database. The options are those of
    :func:`rls_policy_sql` and are checked now, not at create.
    """
    table = _ddl.as_table(table)
    # By its key (a mapped attribute's name) or by its name in the database.
    found = table.c.get(column)
    if found is None:
        found = next((c for c in table.c if c.name == column), None)
    if found is None:
        raise UserError(
            f"table {table.fullname} has no column {column!r}.",
            hint="Name the tenant column with column=.",
        )
    statements = rls_policy_sql(
        table.name,
        column=found.name,
        setting=setting,
        cast=cast,
        schema=table.schema,
        policy=policy,
    )
    event.listen(table, "after_create", _ddl.creator(statements))


def set_tenant(
    target: Session | Connection,
    tenant: int | str | None,
    *,
    setting: str = "pgwarden.tenant_id",
) -> None:
    """Set the tenant the current transaction acts for.

    The setting is transaction-local: it ends with the transaction, so a pooled
    connection never carries one request's tenant into the next. ``None`` sets no
    tenant, under which the policy shows nothing. Async code runs it with
    ``await session.run_sync(set_tenant, 42)``.
    """
    _ddl.check_setting(setting)
    value = None if tenant is None else str(tenant)
    target.execute(_SET_TENANT, {"setting": setting, "tenant": value})
