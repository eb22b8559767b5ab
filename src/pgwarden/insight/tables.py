"""Find tables read the slow way, and a cache that misses.

Each public function runs one query on the statistics views and returns dataclasses;
:func:`check_tables` turns them into findings that say where to look::

    with engine.connect() as conn:
        for table in sequential_scans(conn, min_rows=10_000):
            print(table.table, table.seq_scans, table.seq_rows_read)
        for ratio in cache_hit_ratios(conn):
            print(ratio.scope, ratio.ratio)
        results = check_tables(conn)

The figures are counters since statistics were last reset (``pg_stat_reset()``, a
crash, or a restore), kept by this server only, in views any role may read. Vacuum and
analyze that fall behind are in :mod:`pgwarden.insight.vacuum`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden._sql import qualified
from pgwarden.insight._relations import USER_TABLES
from pgwarden.insight.findings import Check, CheckResult, Finding, run_checks

__all__ = [
    "CacheHitRatio",
    "SequentialScans",
    "cache_hit_findings",
    "cache_hit_ratios",
    "check_tables",
    "sequential_scan_findings",
    "sequential_scans",
]


@dataclass(frozen=True)
class SequentialScans:
    """A table read by sequential scans: how often, how many rows, and its size."""

    schema: str
    table: str
    seq_scans: int
    seq_rows_read: int
    index_scans: int
    index_rows_fetched: int
    live_rows: int

    @property
    def sequential_share(self) -> float:
        """Return the share of the rows read that sequential scans read (0 to 1)."""
        total = self.seq_rows_read + self.index_rows_fetched
        return self.seq_rows_read / total if total else 0.0


@dataclass(frozen=True)
class CacheHitRatio:
    """Blocks found in shared buffers (``hits``) and read from outside them (``reads``).

    ``scope`` is ``database`` (every relation of the database, catalogs included),
    ``tables`` (the heap of user tables) or ``indexes`` (user indexes). A read may
    still have come from the operating system's cache rather than the disk.
    """

    scope: str
    hits: int
    reads: int

    @property
    def blocks(self) -> int:
        """Return the blocks asked for, found in the cache or not."""
        return self.hits + self.reads

    @property
    def ratio(self) -> float | None:
        """Return the share of blocks found in shared buffers, or ``None`` before any."""
        return self.hits / self.blocks if self.blocks else None


SEQUENTIAL_SCANS = text(
    f"""
SELECT n.nspname AS schema,
       c.relname AS "table",
       s.seq_scan AS seq_scans,
       s.seq_tup_read AS seq_rows_read,
       COALESCE(s.idx_scan, 0) AS index_scans,
       COALESCE(s.idx_tup_fetch, 0) AS index_rows_fetched,
       s.n_live_tup AS live_rows
FROM pg_stat_user_tables AS s
JOIN pg_class AS c ON c.oid = s.relid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE {USER_TABLES}
  AND s.n_live_tup >= :min_rows
  AND s.seq_tup_read >= :min_rows_read
ORDER BY s.seq_tup_read DESC, schema, "table"
"""
)


def sequential_scans(
    conn: Connection, *, min_rows: int = 10_000, min_rows_read: int = 1_000_000
) -> list[SequentialScans]:
    """Return tables of ``min_rows`` or more whose sequential scans read ``min_rows_read``.

    Most rows read first. A sequential scan reads every row, so on a large table each
    one costs as much as the table is big; an index on what the query filters by
    reads a few pages instead. ``CREATE INDEX``, foreign-key checks and ``pg_dump``
    scan sequentially too.
    """
    rows = conn.execute(SEQUENTIAL_SCANS, {"min_rows": min_rows, "min_rows_read": min_rows_read})
    return [SequentialScans(**row._mapping) for row in rows]


CACHE_HIT_RATIOS = text(
    """
SELECT 'database' AS scope, d.blks_hit AS hits, d.blks_read AS reads
FROM pg_stat_database AS d
WHERE d.datname = current_database()
UNION ALL
SELECT 'tables', COALESCE(sum(heap_blks_hit), 0)::bigint, COALESCE(sum(heap_blks_read), 0)::bigint
FROM pg_statio_user_tables
UNION ALL
SELECT 'indexes', COALESCE(sum(idx_blks_hit), 0)::bigint, COALESCE(sum(idx_blks_read), 0)::bigint
FROM pg_statio_user_indexes
"""
)


def cache_hit_ratios(conn: Connection) -> list[CacheHitRatio]:
    """Return the cache hit ratios of the database, its tables and its indexes."""
    return [CacheHitRatio(**row._mapping) for row in conn.execute(CACHE_HIT_RATIOS)]


def sequential_scan_findings(tables: Iterable[SequentialScans]) -> list[Finding]:
    """Turn tables read by sequential scans into findings that point at the queries."""
    return [
        Finding(
            check="sequential_scans",
            severity="warning",
            what=f"table {name} ({table.live_rows:,} rows) had {table.seq_scans:,} sequential "
            f"scan{'' if table.seq_scans == 1 else 's'} reading {table.seq_rows_read:,} rows "
            f"({table.sequential_share:.0%} of the rows read from it)",
            why="Each sequential scan reads the whole table. If the queries behind them "
            "filter for a few rows, an index on their filter columns would read a few "
            "pages instead: find them in pg_stat_statements, or run `pgwarden advise "
            "indexes`. A nightly report or pg_dump scans sequentially too, and rightly.",
            fix=None,
            subject=name,
            details={
                "seq_scans": table.seq_scans,
                "seq_rows_read": table.seq_rows_read,
                "index_scans": table.index_scans,
                "index_rows_fetched": table.index_rows_fetched,
                "live_rows": table.live_rows,
                "sequential_share": round(table.sequential_share, 4),
            },
        )
        for table in tables
        for name in [qualified(table.schema, table.table, plain=True)]
    ]


def cache_hit_findings(
    ratios: Iterable[CacheHitRatio], *, min_hit_ratio: float = 0.99, min_blocks: int = 100_000
) -> list[Finding]:
    """Turn ratios below ``min_hit_ratio``, over ``min_blocks`` or more, into findings.

    A ratio over fewer blocks says little: just after a restart every block is a miss.
    """
    findings = []
    for scope in ratios:
        ratio = scope.ratio
        if ratio is None or scope.blocks < min_blocks or ratio >= min_hit_ratio:
            continue
        findings.append(
            Finding(
                check="cache_hit_ratio",
                severity="warning",
                what=f"{scope.scope} cache hit ratio is {ratio:.1%} ({scope.reads:,} of "
                f"{scope.blocks:,} blocks read from outside shared buffers)",
                why="Blocks missing from shared buffers come from the OS cache or the disk, "
                "which is slower. The working set may be larger than shared_buffers (often "
                "about a quarter of RAM; changing it needs a restart), or bloat and unused "
                "indexes may be taking the space.",
                fix=None,
                subject=scope.scope,
                details={"hits": scope.hits, "reads": scope.reads, "ratio": round(ratio, 4)},
            )
        )
    return findings


def _sequential(
    conn: Connection, *, min_rows: int = 10_000, min_rows_read: int = 1_000_000
) -> list[Finding]:
    return sequential_scan_findings(
        sequential_scans(conn, min_rows=min_rows, min_rows_read=min_rows_read)
    )


def _cache(
    conn: Connection, *, min_hit_ratio: float = 0.99, min_blocks: int = 100_000
) -> list[Finding]:
    return cache_hit_findings(
        cache_hit_ratios(conn), min_hit_ratio=min_hit_ratio, min_blocks=min_blocks
    )


CHECKS = (
    Check(
        "sequential_scans",
        "tables",
        "large tables read over and over by sequential scans",
        _sequential,
    ),
    Check(
        "cache_hit_ratio",
        "tables",
        "database, table and index blocks found in shared buffers too rarely",
        _cache,
    ),
)


def check_tables(
    conn: Connection,
    *,
    min_rows: int = 10_000,
    min_rows_read: int = 1_000_000,
    min_hit_ratio: float = 0.99,
    min_blocks: int = 100_000,
) -> list[CheckResult]:
    """Run the two table checks and return one result each, in :data:`CHECKS` order.

    The vacuum and analyze checks are :func:`pgwarden.insight.vacuum.check_vacuum`.
    """
    thresholds: dict[str, dict[str, Any]] = {
        "sequential_scans": {"min_rows": min_rows, "min_rows_read": min_rows_read},
        "cache_hit_ratio": {"min_hit_ratio": min_hit_ratio, "min_blocks": min_blocks},
    }
    return run_checks(conn, CHECKS, thresholds)
