"""Write SQL that names a target table's parts: names, column lists, key JSON, matches.

The tables themselves are described by :mod:`pgwarden.transfer.catalog`
(:func:`~pgwarden.transfer.catalog.load_tables`); :func:`triggers_off` switches their user
triggers off around a write.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import Connection

from pgwarden._sql import qualified as qualified_name
from pgwarden._sql import quote_identifier as quote
from pgwarden._sql import split_table_key
from pgwarden.transfer.catalog import CatalogTable

__all__ = ["column_list", "key_json", "match", "sql_name", "triggers_off"]


def sql_name(qualified: str) -> str:
    """Return a table key (``schema.name``, see :func:`pgwarden._sql.table_key`) quoted for SQL."""
    schema, table = split_table_key(qualified)
    return qualified_name(schema, table)


def column_list(names: Iterable[str], alias: str | None = None) -> str:
    """Return ``a, b, c`` (or ``t.a, t.b``) quoted for SQL."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + quote(name) for name in names)


def key_json(
    columns: Iterable[str],
    alias: str,
    params: dict[str, Any],
    prefix: str,
    *,
    as_text: bool = False,
) -> str:
    """Return ``jsonb_build_object(:k0, alias.c0, ...)``, binding the names into ``params``.

    Names go as bound values, never into the SQL text; the journal's keys are built only
    here, so the same key always has the same JSON. ``as_text`` gives every value as
    its text, as a report shows keys.
    """
    parts = []
    for i, name in enumerate(columns):
        params[f"{prefix}{i}"] = name
        value = f"{alias}.{quote(name)}"
        parts.append(
            f"CAST(:{prefix}{i} AS text), {f'CAST({value} AS text)' if as_text else value}"
        )
    return f"jsonb_build_object({', '.join(parts)})"


def match(columns: Iterable[str], left: str, right: str) -> str:
    """Return ``left.a = right.a AND left.b = right.b`` for ``columns``."""
    return " AND ".join(f"{left}.{quote(c)} = {right}.{quote(c)}" for c in columns)


@contextmanager
def triggers_off(conn: Connection, targets: Iterable[CatalogTable]) -> Iterator[None]:
    """Disable the enabled user triggers of ``targets`` inside, and enable them again after.

    Foreign keys (internal triggers) stay on. ``ALTER TABLE ... DISABLE TRIGGER`` is
    transactional and takes a SHARE ROW EXCLUSIVE lock: other sessions read on, but
    cannot write those tables until the transaction ends. On an error the triggers stay
    disabled for the caller's rollback to restore.
    """
    chosen = [(target, name, enabled) for target in targets for name, enabled in target.triggers]
    for target, name, _ in chosen:
        conn.exec_driver_sql(f"ALTER TABLE {target.sql} DISABLE TRIGGER {quote(name)}")
    yield
    for target, name, enabled in chosen:
        how = "ENABLE ALWAYS" if enabled == "A" else "ENABLE"
        conn.exec_driver_sql(f"ALTER TABLE {target.sql} {how} TRIGGER {quote(name)}")
