"""Monthly partitions of ``page_views``."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.engine import Connection

PARENT = "page_views"


def month_starts(first: date, last: date) -> list[date]:
    """Return the first day of every month from ``first``'s month to ``last``'s, inclusive."""
    months = []
    current = first.replace(day=1)
    while current <= last:
        months.append(current)
        current = date(current.year + current.month // 12, current.month % 12 + 1, 1)
    return months


def partition_name(month: date) -> str:
    """Return the partition's table name for ``month``: ``page_views_2026_03``."""
    return f"{PARENT}_{month.year:04d}_{month.month:02d}"


def ensure_month_partitions(conn: Connection, first: date, last: date) -> list[str]:
    """Create any missing monthly partition between ``first`` and ``last``; return their names.

    Rows outside every monthly partition land in ``page_views_default``.
    """
    created = []
    existing = set(
        conn.execute(
            sa.text(
                "SELECT c.relname FROM pg_inherits AS i"
                " JOIN pg_class AS c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = CAST(:parent AS regclass)"
            ),
            {"parent": PARENT},
        ).scalars()
    )
    for month in month_starts(first, last):
        name = partition_name(month)
        if name in existing:
            continue
        upper = month_starts(month, date(month.year + 1, 12, 31))[1]
        # Names and bounds are generated from dates above, never from user input.
        conn.execute(
            sa.text(
                f'CREATE TABLE "{name}" PARTITION OF "{PARENT}"'
                f" FOR VALUES FROM ('{month.isoformat()}') TO ('{upper.isoformat()}')"
            )
        )
        created.append(name)
    return created
