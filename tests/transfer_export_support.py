"""Helpers of the export tests (library and CLI): load a bundle the plainest way there is,
and find processes an export left behind."""

from __future__ import annotations

import psutil
from sqlalchemy.engine import Engine

from pgwarden.transfer import Bundle


def load_with_copy(engine: Engine, bundle: Bundle) -> dict[str, int]:
    """COPY every file of a COPY-format bundle into ``engine``'s database, in the bundle's order.

    One transaction, foreign keys enforced (no ``session_replication_role``); returns the
    rows loaded per table. Deferrable keys (a cycle) are checked at the commit.
    """
    counts = {}
    with engine.begin() as conn:
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        with dbapi.cursor() as cursor:  # type: ignore[attr-defined]
            for name in bundle.order:
                table = bundle.table(name)
                assert table.format == "copy"
                columns = ", ".join(quote(c) for c in table.column_names)
                target = f"{quote(table.schema)}.{quote(table.name)}"
                with cursor.copy(f"COPY {target} ({columns}) FROM STDIN") as copy:
                    for chunk in bundle.iter_data(table):
                        copy.write(chunk)
                counts[name] = cursor.rowcount
    return counts


def quote(name: str) -> str:
    """Return ``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def forked_children() -> list[int]:
    """Return the pids of this process's children running its own program: its forks."""
    me = psutil.Process()
    return [child.pid for child in me.children() if child.name() == me.name()]


def psql_children() -> list[int]:
    """Return the pids of this process's psql children."""
    return [child.pid for child in psutil.Process().children() if child.name() == "psql"]
