"""Ask a standby how far behind it is: one query, run at most once per check interval."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

# A standby that has replayed everything it received is not behind, however old its
# last replayed commit is (the primary may simply be idle); one still replaying is
# behind by the age of the last commit it replayed, which over-counts after a quiet
# spell and never under-counts. A server not in recovery is nobody's standby: lag 0.
LAG_SQL = sa.text(
    """
SELECT pg_catalog.pg_is_in_recovery() AS in_recovery,
       pg_catalog.pg_last_wal_replay_lsn()::text AS replay_lsn,
       CASE
           WHEN NOT pg_catalog.pg_is_in_recovery() THEN FALSE
           ELSE pg_catalog.pg_is_wal_replay_paused()
       END AS paused,
       CASE
           WHEN NOT pg_catalog.pg_is_in_recovery() THEN 0
           WHEN pg_catalog.pg_last_wal_receive_lsn() = pg_catalog.pg_last_wal_replay_lsn()
               THEN 0
           ELSE EXTRACT(EPOCH FROM pg_catalog.clock_timestamp()
                                   - pg_catalog.pg_last_xact_replay_timestamp())
       END::float8 AS lag_seconds
"""
)

CURRENT_LSN_SQL = sa.text("SELECT pg_catalog.pg_current_wal_lsn()::text")


def parse_lsn(text: str | None) -> int | None:
    """Return the position ``16/B374D848`` as one number, or None."""
    if not text:
        return None
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(value: int | None) -> str | None:
    """Return ``value`` written the way PostgreSQL writes an LSN."""
    return None if value is None else f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def probe(engine: Engine) -> dict[str, Any]:
    """Return the standby's recovery state; raises the driver's error if unreachable."""
    with engine.connect() as conn:
        row = conn.execute(LAG_SQL).mappings().one()
        conn.rollback()
    replay = parse_lsn(row["replay_lsn"])
    return {
        "in_recovery": bool(row["in_recovery"]),
        "replay_lsn": replay,
        "paused": bool(row["paused"]),
        "lag_seconds": None if row["lag_seconds"] is None else float(row["lag_seconds"]),
    }


def current_lsn(engine: Engine) -> int | None:
    """Return the primary's current WAL write position."""
    with engine.connect() as conn:
        value = conn.execute(CURRENT_LSN_SQL).scalar_one()
        conn.rollback()
    return parse_lsn(value)
