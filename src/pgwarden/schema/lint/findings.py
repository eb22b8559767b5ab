"""The shapes the migration linter reports in: a finding, and the live figures behind it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "SEVERITIES",
    "ConflictingSession",
    "LintFinding",
    "Severity",
    "TableFigures",
    "at_least",
]

Severity = Literal["info", "low", "medium", "high"]
#: Severities from the mildest: ``info`` costs nothing, ``high`` blocks or breaks production.
SEVERITIES: tuple[Severity, ...] = ("info", "low", "medium", "high")


def at_least(severity: Severity, floor: Severity) -> bool:
    """Return whether ``severity`` is ``floor`` or worse."""
    return SEVERITIES.index(severity) >= SEVERITIES.index(floor)


@dataclass(frozen=True)
class ConflictingSession:
    """A session holding (or queued for) a lock the statement would wait behind now."""

    pid: int
    mode: str  # as pg_locks names it: AccessShareLock, RowExclusiveLock, ...
    granted: bool
    seconds: float | None  # how long its transaction (or query) has run
    application_name: str
    user: str | None
    state: str | None
    query: str  # the start of its current or last statement


@dataclass(frozen=True)
class TableFigures:
    """What the live database says of a table a statement touches."""

    table: str  # schema.name as pgwarden names tables
    rows: int  # estimated from the statistics; 0 only when the table holds no row
    size_bytes: int  # with its indexes and TOAST
    writes_per_second: float  # rows inserted, updated and deleted, now or on average
    blockers: tuple[ConflictingSession, ...] = ()


@dataclass(frozen=True)
class LintFinding:
    """One unsafe statement of a migration, why, and the safe way to write it.

    ``file`` and ``line`` (1-based) point at the SQL file, or at the Alembic revision file
    and the line of the ``op`` call that produced the statement; ``statement`` is its SQL.
    ``squawk_rules`` names the squawk rules this finding covers (empty when squawk did
    not flag it), ``notes`` what the live database or the migration itself changed about
    the verdict, and ``table`` the figures behind it when a database was given.
    """

    rule: str
    severity: Severity
    message: str
    fix: str
    file: str | None
    line: int
    column: int
    statement: str
    subject: str | None = None  # the table (schema.name) the statement works on
    revision: str | None = None
    sources: tuple[str, ...] = ("pgwarden",)
    squawk_rules: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    table: TableFigures | None = None

    @property
    def where(self) -> str:
        """Return ``file:line:column``, or ``line:column`` for SQL given as text."""
        place = f"{self.line}:{self.column}"
        return f"{self.file}:{place}" if self.file else place
