"""Find vacuum and analyze that fall behind, autovacuum turned off, and vacuums running.

Each public function runs one query on the statistics views or the catalog and returns
dataclasses; :func:`check_vacuum` turns them all into findings with the SQL that fixes
each::

    with engine.connect() as conn:
        for table in vacuum_needed(conn, min_dead_rows=1_000):
            print(table.table, table.dead_rows, table.last_vacuum)
        for vacuum in vacuums_running(conn):
            print(vacuum.pid, vacuum.table, vacuum.phase)
        results = check_vacuum(conn)

The figures are counters since statistics were last reset (``pg_stat_reset()``, a
crash, or a restore), kept by this server only. Everything reads views any role may
read; only a member of ``pg_monitor`` (or ``pg_read_all_stats``) sees which table
another role's vacuum, or an autovacuum, is working on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden._sql import qualified
from pgwarden._units import format_duration
from pgwarden.insight._relations import USER_TABLES
from pgwarden.insight.findings import Check, CheckResult, Finding, run_checks

__all__ = [
    "AnalyzeStatus",
    "AutovacuumDisabled",
    "VacuumProgress",
    "VacuumStatus",
    "analyze_findings",
    "analyze_needed",
    "autovacuum_disabled",
    "autovacuum_findings",
    "check_vacuum",
    "vacuum_findings",
    "vacuum_needed",
    "vacuum_progress_findings",
    "vacuums_running",
]

# A table's autovacuum_enabled storage parameter; the boolean cast reads it as the
# server does ('off', 'false', '0'...).
_AUTOVACUUM_ENABLED = """COALESCE((
    SELECT o.option_value::boolean
    FROM pg_options_to_table({rel}.reloptions) AS o
    WHERE o.option_name = 'autovacuum_enabled'
  ), true)"""


@dataclass(frozen=True)
class VacuumStatus:
    """A table with many dead rows, or rows inserted and never vacuumed.

    ``last_vacuum`` is the later of the last manual and automatic vacuum;
    ``autovacuum_enabled`` is the table's own storage parameter.
    """

    schema: str
    table: str
    live_rows: int
    dead_rows: int
    inserted_rows: int
    last_vacuum: dt.datetime | None
    autovacuum_enabled: bool

    @property
    def dead_fraction(self) -> float:
        """Return the dead rows' share of all rows (0 to 1)."""
        total = self.live_rows + self.dead_rows
        return self.dead_rows / total if total else 0.0


@dataclass(frozen=True)
class AnalyzeStatus:
    """A table never analyzed, or changed a lot since it was last analyzed.

    ``last_analyze`` is the later of the last manual and automatic ANALYZE, and
    ``modified_rows`` the rows inserted, updated or deleted since then.
    """

    schema: str
    table: str
    live_rows: int
    modified_rows: int
    last_analyze: dt.datetime | None


@dataclass(frozen=True)
class AutovacuumDisabled:
    """A table whose storage parameters turn autovacuum off, for it or its TOAST table."""

    schema: str
    table: str
    materialized: bool
    table_disabled: bool
    toast_disabled: bool


@dataclass(frozen=True)
class VacuumProgress:
    """A VACUUM running now in this database, manual or automatic.

    ``wraparound`` marks an autovacuum run to prevent transaction ID wraparound. Of
    another role's vacuum, a role without ``pg_read_all_stats`` sees the ``pid`` only:
    the other fields are ``None`` (or false).
    """

    pid: int
    schema: str | None
    table: str | None
    phase: str | None
    autovacuum: bool
    wraparound: bool
    heap_blocks_total: int | None
    heap_blocks_scanned: int | None
    duration_s: float | None


VACUUM_NEEDED = text(
    f"""
SELECT n.nspname AS schema,
       c.relname AS "table",
       s.n_live_tup AS live_rows,
       s.n_dead_tup AS dead_rows,
       s.n_ins_since_vacuum AS inserted_rows,
       GREATEST(s.last_vacuum, s.last_autovacuum) AS last_vacuum,
       {_AUTOVACUUM_ENABLED.format(rel="c")} AS autovacuum_enabled
FROM pg_stat_user_tables AS s
JOIN pg_class AS c ON c.oid = s.relid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE {USER_TABLES}
  AND (
    (s.n_dead_tup >= :min_dead_rows
     AND s.n_dead_tup >= :min_dead_fraction * (s.n_live_tup + s.n_dead_tup))
    OR (s.last_vacuum IS NULL
        AND s.last_autovacuum IS NULL
        AND s.n_ins_since_vacuum >= :min_inserted_rows)
  )
ORDER BY s.n_dead_tup DESC, s.n_ins_since_vacuum DESC, schema, "table"
"""
)


def vacuum_needed(
    conn: Connection,
    *,
    min_dead_rows: int = 10_000,
    min_dead_fraction: float = 0.2,
    min_inserted_rows: int = 10_000,
) -> list[VacuumStatus]:
    """Return tables with many dead rows, or with rows inserted and never vacuumed.

    A table qualifies with ``min_dead_rows`` dead rows that are also
    ``min_dead_fraction`` of all its rows, or with no vacuum on record and
    ``min_inserted_rows`` inserted since. Most dead rows first.
    """
    params = {
        "min_dead_rows": min_dead_rows,
        "min_dead_fraction": min_dead_fraction,
        "min_inserted_rows": min_inserted_rows,
    }
    return [VacuumStatus(**row._mapping) for row in conn.execute(VACUUM_NEEDED, params)]


ANALYZE_NEEDED = text(
    f"""
SELECT n.nspname AS schema,
       c.relname AS "table",
       s.n_live_tup AS live_rows,
       s.n_mod_since_analyze AS modified_rows,
       GREATEST(s.last_analyze, s.last_autoanalyze) AS last_analyze
FROM pg_stat_user_tables AS s
JOIN pg_class AS c ON c.oid = s.relid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE {USER_TABLES}
  AND s.n_mod_since_analyze >= :min_modified_rows
  AND (
    GREATEST(s.last_analyze, s.last_autoanalyze) IS NULL
    OR s.n_mod_since_analyze >= :min_modified_fraction * s.n_live_tup
  )
ORDER BY s.n_mod_since_analyze DESC, schema, "table"
"""
)


def analyze_needed(
    conn: Connection, *, min_modified_rows: int = 1_000, min_modified_fraction: float = 0.2
) -> list[AnalyzeStatus]:
    """Return tables whose planner statistics are missing or stale, most changed first.

    A table qualifies with ``min_modified_rows`` rows changed since its last ANALYZE,
    and either no ANALYZE on record or changes of ``min_modified_fraction`` of its
    live rows.
    """
    params = {
        "min_modified_rows": min_modified_rows,
        "min_modified_fraction": min_modified_fraction,
    }
    return [AnalyzeStatus(**row._mapping) for row in conn.execute(ANALYZE_NEEDED, params)]


AUTOVACUUM_DISABLED = text(
    f"""
SELECT *
FROM (
  SELECT n.nspname AS schema,
         c.relname AS "table",
         c.relkind = 'm' AS materialized,
         NOT {_AUTOVACUUM_ENABLED.format(rel="c")} AS table_disabled,
         -- toast.autovacuum_enabled is stored on the TOAST table itself
         NOT {_AUTOVACUUM_ENABLED.format(rel="t")} AS toast_disabled
  FROM pg_class AS c
  JOIN pg_namespace AS n ON n.oid = c.relnamespace
  LEFT JOIN pg_class AS t ON t.oid = c.reltoastrelid
  WHERE {USER_TABLES}
) AS options
WHERE table_disabled OR toast_disabled
ORDER BY schema, "table"
"""
)


def autovacuum_disabled(conn: Connection) -> list[AutovacuumDisabled]:
    """Return the tables whose storage parameters turn autovacuum off."""
    return [AutovacuumDisabled(**row._mapping) for row in conn.execute(AUTOVACUUM_DISABLED)]


VACUUMS_RUNNING = text(
    """
SELECT p.pid,
       n.nspname AS schema,
       c.relname AS "table",
       p.phase,
       COALESCE(a.backend_type = 'autovacuum worker', false) AS autovacuum,
       COALESCE(a.query LIKE '%(to prevent wraparound)%', false) AS wraparound,
       p.heap_blks_total AS heap_blocks_total,
       p.heap_blks_scanned AS heap_blocks_scanned,
       EXTRACT(EPOCH FROM clock_timestamp() - a.xact_start)::float8 AS duration_s
FROM pg_stat_progress_vacuum AS p
LEFT JOIN pg_class AS c ON c.oid = p.relid
LEFT JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_activity AS a ON a.pid = p.pid
WHERE p.datname = current_database()
ORDER BY duration_s DESC NULLS LAST, p.pid
"""
)


def vacuums_running(conn: Connection) -> list[VacuumProgress]:
    """Return the vacuums running now in this database, longest running first.

    Without ``pg_read_all_stats`` (part of ``pg_monitor``) a role sees only the process
    of another role's vacuum, or of an autovacuum: not its table nor its progress.
    """
    return [VacuumProgress(**row._mapping) for row in conn.execute(VACUUMS_RUNNING)]


def vacuum_findings(tables: Iterable[VacuumStatus]) -> list[Finding]:
    """Turn tables in need of a vacuum into findings whose fix vacuums them."""
    findings = []
    for table in tables:
        name = qualified(table.schema, table.table, plain=True)
        dead = f"{table.dead_rows:,} dead rows ({table.dead_fraction:.0%} of its rows)"
        if table.last_vacuum is None:
            what = f"table {name} was never vacuumed: {table.inserted_rows:,} rows inserted"
            what += f", {dead}" if table.dead_rows else ""
        else:
            what = f"table {name} has {dead}, last vacuumed {_when(table.last_vacuum)}"
        why = (
            "Dead rows take space and slow scans until a vacuum makes the space "
            "reusable, and until a table is vacuumed, index-only scans must still visit "
            "its pages. Autovacuum should have done this"
        )
        why += "; it is off for this table." if not table.autovacuum_enabled else "."
        findings.append(
            Finding(
                check="vacuum_needed",
                severity="warning",
                what=what,
                why=why,
                fix=f"VACUUM (ANALYZE) {name};",
                subject=name,
                details={
                    "live_rows": table.live_rows,
                    "dead_rows": table.dead_rows,
                    "inserted_rows": table.inserted_rows,
                    "dead_fraction": round(table.dead_fraction, 4),
                    "last_vacuum": _iso(table.last_vacuum),
                    "autovacuum_enabled": table.autovacuum_enabled,
                },
            )
        )
    return findings


def analyze_findings(tables: Iterable[AnalyzeStatus]) -> list[Finding]:
    """Turn tables with stale planner statistics into findings whose fix analyzes them."""
    return [
        Finding(
            check="analyze_needed",
            severity="warning",
            what=f"table {name} has {table.modified_rows:,} rows changed since "
            + (
                "it was created, and was never analyzed"
                if table.last_analyze is None
                else f"it was last analyzed {_when(table.last_analyze)}"
            )
            + f" ({table.live_rows:,} live rows)",
            why="The planner estimates row counts from the statistics ANALYZE gathers; "
            "stale ones lead it to poor plans, such as a nested loop over many rows. "
            "(A statistics reset also clears the record of past ANALYZE runs.)",
            fix=f"ANALYZE {name};",
            subject=name,
            details={
                "live_rows": table.live_rows,
                "modified_rows": table.modified_rows,
                "last_analyze": _iso(table.last_analyze),
            },
        )
        for table in tables
        for name in [qualified(table.schema, table.table, plain=True)]
    ]


def autovacuum_findings(tables: Iterable[AutovacuumDisabled]) -> list[Finding]:
    """Turn tables with autovacuum turned off into findings whose fix turns it back on."""
    findings = []
    for table in tables:
        name = qualified(table.schema, table.table, plain=True)
        options = [
            option
            for option, off in [
                ("autovacuum_enabled", table.table_disabled),
                ("toast.autovacuum_enabled", table.toast_disabled),
            ]
            if off
        ]
        kind = "MATERIALIZED VIEW" if table.materialized else "TABLE"
        findings.append(
            Finding(
                check="autovacuum_disabled",
                severity="warning",
                what=f"autovacuum is off for {name}"
                + (" (its TOAST table)" if options == ["toast.autovacuum_enabled"] else ""),
                why="Nothing vacuums or analyzes it unless someone runs VACUUM by hand: "
                "dead rows pile up into bloat and the planner's statistics go stale. "
                "Autovacuum still runs to prevent wraparound, then all at once.",
                fix=f"ALTER {kind} {name} RESET ({', '.join(options)});",
                subject=name,
                details={"options": options},
            )
        )
    return findings


def vacuum_progress_findings(vacuums: Iterable[VacuumProgress]) -> list[Finding]:
    """Turn running vacuums into findings: info, or a warning against wraparound."""
    findings = []
    for vacuum in vacuums:
        name = (
            qualified(vacuum.schema, vacuum.table, plain=True)
            if vacuum.schema and vacuum.table
            else None
        )
        total, done = vacuum.heap_blocks_total, vacuum.heap_blocks_scanned
        scanned = (
            f", {done / total:.0%} of {total:,} blocks scanned"
            if total and done is not None
            else ""
        )
        duration = (
            f", for {format_duration(vacuum.duration_s)}" if vacuum.duration_s is not None else ""
        )
        who = "autovacuum" if vacuum.autovacuum else "VACUUM"
        why = "A vacuum is working through the table now; this is for information."
        if vacuum.wraparound:
            who = "autovacuum (to prevent wraparound)"
            why = (
                "A vacuum to prevent wraparound must finish: cancelled, it starts again. "
                "It blocks DDL on the table until then; let it run."
            )
        findings.append(
            Finding(
                check="vacuums_running",
                severity="warning" if vacuum.wraparound else "info",
                what=f"{who} of {name or 'a table'} is running (process {vacuum.pid}): "
                f"{vacuum.phase or 'phase unknown'}{scanned}{duration}",
                why=why,
                fix=None,
                subject=name,
                details={
                    "pid": vacuum.pid,
                    "phase": vacuum.phase,
                    "autovacuum": vacuum.autovacuum,
                    "wraparound": vacuum.wraparound,
                    "heap_blocks_total": vacuum.heap_blocks_total,
                    "heap_blocks_scanned": vacuum.heap_blocks_scanned,
                    "duration_s": vacuum.duration_s,
                },
            )
        )
    return findings


def _vacuum(
    conn: Connection,
    *,
    min_dead_rows: int = 10_000,
    min_dead_fraction: float = 0.2,
    min_inserted_rows: int = 10_000,
) -> list[Finding]:
    return vacuum_findings(
        vacuum_needed(
            conn,
            min_dead_rows=min_dead_rows,
            min_dead_fraction=min_dead_fraction,
            min_inserted_rows=min_inserted_rows,
        )
    )


def _analyze(
    conn: Connection, *, min_modified_rows: int = 1_000, min_modified_fraction: float = 0.2
) -> list[Finding]:
    return analyze_findings(
        analyze_needed(
            conn, min_modified_rows=min_modified_rows, min_modified_fraction=min_modified_fraction
        )
    )


CHECKS = (
    Check(
        "vacuum_needed",
        "vacuum",
        "tables with many dead rows, or never vacuumed",
        _vacuum,
    ),
    Check(
        "analyze_needed",
        "vacuum",
        "tables never analyzed, or changed a lot since",
        _analyze,
    ),
    Check(
        "autovacuum_disabled",
        "vacuum",
        "tables whose storage parameters turn autovacuum off",
        lambda conn: autovacuum_findings(autovacuum_disabled(conn)),
    ),
    Check(
        "vacuums_running",
        "vacuum",
        "vacuums running now, and any against wraparound",
        lambda conn: vacuum_progress_findings(vacuums_running(conn)),
    ),
)


def check_vacuum(
    conn: Connection,
    *,
    min_dead_rows: int = 10_000,
    min_dead_fraction: float = 0.2,
    min_inserted_rows: int = 10_000,
    min_modified_rows: int = 1_000,
    min_modified_fraction: float = 0.2,
) -> list[CheckResult]:
    """Run the four vacuum checks and return one result each, in :data:`CHECKS` order."""
    thresholds = {
        "vacuum_needed": {
            "min_dead_rows": min_dead_rows,
            "min_dead_fraction": min_dead_fraction,
            "min_inserted_rows": min_inserted_rows,
        },
        "analyze_needed": {
            "min_modified_rows": min_modified_rows,
            "min_modified_fraction": min_modified_fraction,
        },
    }
    return run_checks(conn, CHECKS, thresholds)


def _when(moment: dt.datetime) -> str:
    return f"at {moment.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
