"""Give mapped classes a primary key, timestamps kept by the database, and soft deletes.

Mix the classes into a declarative model::

    class Content(IdPrimaryKey, Timestamps, SoftDelete, Base):
        __tablename__ = "content"
        __mapper_args__ = {"eager_defaults": True}  # fetch updated_at with RETURNING
        title: Mapped[str]

``updated_at`` is set by a trigger, so a raw ``UPDATE`` keeps it current as well as the
ORM; create the trigger with :func:`install_updated_at_triggers` (for
``metadata.create_all``) or :func:`updated_at_trigger_sql` (in an Alembic migration).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import BigInteger, DateTime, FetchedValue, Identity, MetaData, event, func
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import (
    Mapped,
    ORMExecuteState,
    Session,
    mapped_column,
    sessionmaker,
    with_loader_criteria,
)
from sqlalchemy.sql import Executable

from pgwarden._sql import quote_identifier
from pgwarden.errors import UserError
from pgwarden.orm import _ddl

__all__ = [
    "UPDATED_AT_FUNCTION_SQL",
    "IdPrimaryKey",
    "SoftDelete",
    "Timestamps",
    "enable_soft_delete_filter",
    "include_deleted",
    "install_updated_at_triggers",
    "updated_at_trigger_sql",
]

_E = TypeVar("_E", bound=Executable)

UPDATED_AT_TRIGGER = "pgwarden_updated_at"

# clock_timestamp(), not now(): two updates in one transaction get two different times.
# The pinned search_path keeps the writer's own (a schema with its own clock_timestamp
# ahead of pg_catalog) out of it.
UPDATED_AT_FUNCTION_SQL = """\
CREATE OR REPLACE FUNCTION pgwarden_set_updated_at()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.updated_at := clock_timestamp();
    RETURN NEW;
END
$$"""


class IdPrimaryKey:
    """Add ``id``: a ``bigint`` identity primary key."""

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)


class Timestamps:
    """Add ``created_at`` and ``updated_at``, both ``timestamptz`` set by the server.

    ``updated_at`` is marked as changed by the server on UPDATE, so the ORM expires it
    after a flush (or fetches it with RETURNING when the mapper has
    ``eager_defaults=True``, which async code wants: it cannot lazy-load an attribute).
    """

    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True),
        server_default=func.now(),
        server_onupdate=FetchedValue(),
        nullable=False,
    )


class SoftDelete:
    """Add ``deleted_at``: a row is deleted when it is set, and can be restored.

    The mixin only marks rows; :func:`enable_soft_delete_filter` is what hides them from
    queries.
    """

    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    def soft_delete(self) -> None:
        """Mark this row deleted as of now; it is written at the next flush."""
        self.deleted_at = datetime.now(UTC)

    def restore(self) -> None:
        """Undo :meth:`soft_delete`; the row is visible again after the next flush."""
        self.deleted_at = None

    @property
    def is_deleted(self) -> bool:
        """Tell whether this row is marked deleted."""
        return self.deleted_at is not None


def updated_at_trigger_sql(table: str, *, schema: str | None = None) -> list[str]:
    """Return the statements that keep ``updated_at`` of ``table`` current on UPDATE.

    They create (or replace) the function ``pgwarden_set_updated_at()``, then drop and
    create the trigger, so they can run again safely. In an Alembic migration::

        for statement in updated_at_trigger_sql("content"):
            op.execute(statement)
    """
    target = _ddl.table_name(table, schema)
    trigger = quote_identifier(UPDATED_AT_TRIGGER)
    return [
        UPDATED_AT_FUNCTION_SQL,
        f"DROP TRIGGER IF EXISTS {trigger} ON {target}",
        f"CREATE TRIGGER {trigger}\n"
        f"BEFORE UPDATE ON {target}\n"
        "FOR EACH ROW\n"
        "EXECUTE FUNCTION pgwarden_set_updated_at()",
    ]


def _create_updated_at_triggers(target: MetaData, connection: Connection, **kw: Any) -> None:
    tables = kw.get("tables", target.sorted_tables)  # only those this create_all made
    for table in tables:
        if "updated_at" in table.c:
            _ddl.run(connection, updated_at_trigger_sql(table.name, schema=table.schema))


def install_updated_at_triggers(metadata: MetaData) -> None:
    """Make ``metadata.create_all`` create the ``updated_at`` trigger on its tables.

    Every table created that has an ``updated_at`` column gets the trigger, including
    tables added to ``metadata`` after this call. Calling it twice does no harm.
    """
    if not event.contains(metadata, "after_create", _create_updated_at_triggers):
        event.listen(metadata, "after_create", _create_updated_at_triggers)


def _hide_soft_deleted(state: ORMExecuteState) -> None:
    # Refreshing an object already loaded (a column load) must still find it, deleted or not.
    if not state.is_select or state.is_column_load:
        return
    if state.execution_options.get("include_deleted", False):
        return
    state.statement = state.statement.options(
        with_loader_criteria(SoftDelete, lambda cls: cls.deleted_at.is_(None), include_aliases=True)
    )


def enable_soft_delete_filter(
    session_class: type[Session] | sessionmaker[Any] | async_sessionmaker[Any],
) -> None:
    """Hide soft-deleted rows from every ORM SELECT of sessions of ``session_class``.

    Queries, ``Session.get`` and relationship loads (lazy, ``selectinload``,
    ``joinedload``) leave out rows of :class:`SoftDelete` models whose ``deleted_at`` is
    set, unless the execution options say ``include_deleted=True``: on the statement
    (:func:`include_deleted`), on the ``execute`` call, or for a whole session
    (``Session(engine, execution_options={"include_deleted": True})``).

    Pass your own ``Session`` subclass or a ``sessionmaker`` to limit the filter to
    those sessions. For ``AsyncSession``, pass the sync class it runs on: an
    ``async_sessionmaker(..., sync_session_class=AppSession)`` or ``AppSession``
    itself. Objects already in the session's identity map are returned by
    ``Session.get`` without a query, deleted or not.
    """
    target: type[Session] | sessionmaker[Any]
    if isinstance(session_class, async_sessionmaker):
        sync_class = session_class.kw.get("sync_session_class")
        if sync_class is None or sync_class is Session:
            raise UserError(
                "this async_sessionmaker runs on the plain Session class; filtering it "
                "would change every session in the process.",
                hint="Subclass Session (class AppSession(Session): pass), pass "
                "sync_session_class=AppSession to async_sessionmaker, and enable the "
                "filter on it.",
            )
        target = sync_class
    else:
        target = session_class
    if not event.contains(target, "do_orm_execute", _hide_soft_deleted):
        event.listen(target, "do_orm_execute", _hide_soft_deleted)


def include_deleted(statement: _E) -> _E:
    """Return ``statement`` set to see soft-deleted rows as well."""
    return statement.execution_options(include_deleted=True)
