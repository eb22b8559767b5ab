"""Run every health check on a database and gather what they found into one report.

:func:`doctor` is what ``pgwarden doctor`` prints: each check of :data:`CHECKS` run in
its own savepoint, so one that is skipped (a missing extension or privilege) or fails
(a timeout) leaves the others to run and says why in the report::

    with engine.connect() as conn:
        report = doctor(conn, thresholds={"unused_indexes": {"min_size_bytes": 0}})
    for finding in report.findings_at("warning"):
        print(finding.severity, finding.what, finding.fix)

The run is read-only and bounded: it sets ``lock_timeout`` so no catalog query waits
behind another session's lock, and a ``statement_timeout`` for each check.
"""

from __future__ import annotations

import datetime as dt
import inspect
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import StatementError

from pgwarden.db.engines import connect
from pgwarden.errors import ConnectionFailed, UserError
from pgwarden.insight import (
    activity,
    archiving,
    bloat,
    constraints,
    indexes,
    privileges,
    replication,
    sequences,
    settings,
    sizes,
    slots,
    statements,
    tables,
    vacuum,
    wraparound,
)
from pgwarden.insight.findings import Check, CheckResult, Finding, Severity

__all__ = [
    "CHECKS",
    "SEVERITIES",
    "DoctorReport",
    "ServerReport",
    "Unreachable",
    "databases",
    "doctor",
    "doctor_server",
    "find_checks",
    "threshold_names",
]

# Most serious first: the order a report is read in.
SEVERITIES: tuple[Severity, ...] = ("critical", "warning", "info")

CHECKS: tuple[Check, ...] = (
    *indexes.CHECKS,
    *sequences.CHECKS,
    *constraints.CHECKS,
    *privileges.CHECKS,
    *tables.CHECKS,
    *vacuum.CHECKS,
    *bloat.CHECKS,
    *sizes.CHECKS,
    *statements.CHECKS,
    *activity.CHECKS,
    *wraparound.CHECKS,
    *replication.CHECKS,
    *slots.CHECKS,
    *settings.CHECKS,
    *archiving.CHECKS,
)


@dataclass(frozen=True)
class DoctorReport:
    """What one run of the checks on one database found."""

    database: str
    server_version: str
    started_at: dt.datetime
    duration_s: float
    results: list[CheckResult]
    scopes: tuple[str, ...] = ("database", "cluster")
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def findings(self) -> list[Finding]:
        """Return every finding, most serious first, in check order within a severity."""
        found = [finding for result in self.results for finding in result.findings]
        return sorted(found, key=lambda finding: SEVERITIES.index(finding.severity))

    def findings_at(self, severity: Severity) -> list[Finding]:
        """Return the findings at ``severity`` or more serious."""
        rank = SEVERITIES.index(severity)
        return [f for f in self.findings if SEVERITIES.index(f.severity) <= rank]

    @property
    def skipped(self) -> list[CheckResult]:
        """Return the checks that could not run here, each with its reason."""
        return [result for result in self.results if result.skipped]

    @property
    def failed(self) -> list[CheckResult]:
        """Return the checks that stopped on an error."""
        return [result for result in self.results if result.error]


@dataclass(frozen=True)
class Unreachable:
    """A database a run over a server listed but could not connect to, and why."""

    database: str
    error: str


@dataclass(frozen=True)
class ServerReport:
    """What one run of the checks found on one database, or on each of a server's."""

    reports: list[DoctorReport]
    unreachable: list[Unreachable] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Return the number of findings at each severity, over every database."""
        return {s: sum(report.counts.get(s, 0) for report in self.reports) for s in SEVERITIES}

    @property
    def failed(self) -> bool:
        """Return whether a check stopped on an error on some database."""
        return any(report.failed for report in self.reports)

    def findings_at(self, severity: Severity) -> list[Finding]:
        """Return the findings at ``severity`` or more serious, over every database."""
        return [finding for report in self.reports for finding in report.findings_at(severity)]


# Databases a run over a whole server visits: those that accept connections.
_DATABASES = text(
    """
SELECT datname
FROM pg_database
WHERE datallowconn
  AND NOT datistemplate
ORDER BY datname
"""
)


def databases(conn: Connection) -> list[str]:
    """Return the names of the server's databases that accept connections, sorted."""
    return list(conn.execute(_DATABASES).scalars().all())


def doctor_server(
    engine_for: Callable[[str | None], Engine],
    *,
    checks: Iterable[str] | None = None,
    thresholds: Mapping[str, Mapping[str, Any]] | None = None,
    all_databases: bool = False,
) -> ServerReport:
    """Run the checks on a database, or on every database of its server; dispose engines.

    ``engine_for(None)`` is an engine for the database asked for, ``engine_for(name)``
    one for another database of the same server. With ``all_databases``, the server-wide
    checks run once, on the first database, and the per-database checks on each; a
    database that cannot be reached (dropped since it was listed, closed to the role)
    is reported in :attr:`ServerReport.unreachable` while the others are checked. The
    first database must be reachable: :class:`~pgwarden.errors.ConnectionFailed` if not.
    """
    checks = None if checks is None else tuple(checks)
    first = _doctor(engine_for(None), checks, thresholds, ("database", "cluster"))
    reports, unreachable = [first], []
    if all_databases:
        engine = engine_for(None)
        try:
            with connect(engine) as conn:
                names = databases(conn)
        finally:
            engine.dispose()
        for database in names:
            if database == first.database:
                continue
            try:
                engine = engine_for(database)
                reports.append(_doctor(engine, checks, thresholds, ("database",)))
            except ConnectionFailed as error:
                unreachable.append(Unreachable(database, error.message))
    return ServerReport(reports, unreachable)


def _doctor(
    engine: Engine,
    checks: Iterable[str] | None,
    thresholds: Mapping[str, Mapping[str, Any]] | None,
    scopes: tuple[str, ...],
) -> DoctorReport:
    try:
        with connect(engine) as conn:
            return doctor(conn, checks=checks, thresholds=thresholds, scopes=scopes)
    finally:
        engine.dispose()


def find_checks(names: Iterable[str] | None = None) -> list[Check]:
    """Return the checks named (by check or by area), or all of them, in registry order.

    An unknown name is a :class:`~pgwarden.errors.UserError` that lists the known ones.
    """
    if names is None:
        return list(CHECKS)
    wanted = set(names)
    known = {check.name for check in CHECKS} | {check.area for check in CHECKS}
    unknown = sorted(wanted - known)
    if unknown:
        raise UserError(
            f"unknown check {', '.join(unknown)}.",
            hint="Known checks: " + ", ".join(check.name for check in CHECKS)
            + "; or an area: " + ", ".join(sorted({check.area for check in CHECKS}))
            + ". `pgwarden doctor --list` describes each.",
        )  # fmt: skip
    return [check for check in CHECKS if check.name in wanted or check.area in wanted]


def threshold_names(check: Check) -> dict[str, Any]:
    """Return the thresholds ``check`` accepts, each with its default."""
    parameters = inspect.signature(check.findings).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def doctor(
    conn: Connection,
    *,
    checks: Iterable[str] | None = None,
    thresholds: Mapping[str, Mapping[str, Any]] | None = None,
    scopes: Collection[str] = ("database", "cluster"),
    lock_timeout_ms: int = 2_000,
    statement_timeout_ms: int = 60_000,
) -> DoctorReport:
    """Run the checks (all, or those named) and return what they found.

    ``thresholds`` overrides a check's keyword defaults, by check name:
    ``{"unused_indexes": {"min_size_bytes": 0}}``; an unknown check or threshold is a
    :class:`~pgwarden.errors.UserError`, raised before anything runs. ``scopes`` limits
    the run to per-database checks, or to the server-wide ones, for a run over many
    databases of one server. A check that fails (a timeout, an error) is reported with
    the error in :attr:`DoctorReport.failed` while the others still run.

    Each check runs in a read-only transaction of its own, rolled back at the end,
    leaving ``conn`` as it was found; called inside a transaction, the checks run in
    savepoints of it instead, and the timeouts last until that transaction ends.
    """
    selected = [check for check in find_checks(checks) if check.scope in scopes]
    overrides = _validated(thresholds or {})
    started_at = dt.datetime.now(dt.UTC)
    clock = time.perf_counter()
    timeouts = {"lock": f"{lock_timeout_ms}ms", "statement": f"{statement_timeout_ms}ms"}
    results = []
    if conn.in_transaction():
        # The caller's transaction (a SET ROLE, say): each check in a savepoint of it.
        # Its timeouts stay set until that transaction ends.
        database, version = _bound(conn, timeouts, read_only=False)
        results = [_run(conn, check, overrides.get(check.name, {})) for check in selected]
    else:
        # A transaction per check: the locks a check takes (one per relation it sizes)
        # are let go before the next, so a database of many thousand relations does
        # not fill the server's lock table. Rolled back whole, it needs no savepoint.
        database = version = ""
        for check in selected:
            with conn.begin() as transaction:
                database, version = _bound(conn, timeouts)
                results.append(_run(conn, check, overrides.get(check.name, {}), savepoint=False))
                transaction.rollback()
        if not selected:
            with conn.begin():
                database, version = _bound(conn, timeouts)
    counts: dict[str, int] = dict.fromkeys(SEVERITIES, 0)
    for result in results:
        for finding in result.findings:
            counts[finding.severity] += 1
    return DoctorReport(
        database=database,
        server_version=version,
        started_at=started_at,
        duration_s=time.perf_counter() - clock,
        results=results,
        scopes=tuple(scopes),
        counts=counts,
    )


def _bound(
    conn: Connection, timeouts: Mapping[str, str], *, read_only: bool = True
) -> tuple[str, str]:
    """Bound the current transaction's waits; return the database and server version."""
    row = conn.execute(
        text(
            "SELECT current_database(),"
            " split_part(current_setting('server_version'), ' ', 1),"
            " CASE WHEN :read_only THEN set_config('transaction_read_only', 'on', true) END,"
            " set_config('lock_timeout', :lock, true),"
            " set_config('statement_timeout', :statement, true)"
        ),
        {**timeouts, "read_only": read_only},
    ).one()
    return row[0], row[1]


def _run(
    conn: Connection, check: Check, thresholds: Mapping[str, Any], *, savepoint: bool = True
) -> CheckResult:
    try:
        return check(conn, savepoint=savepoint, **thresholds)
    except StatementError as error:  # from the server (DBAPIError), or before it was reached
        # run_check's savepoint has been rolled back; the transaction goes on.
        reason = str(error.orig).splitlines()[0] if error.orig else str(error)
        return CheckResult(check.name, [], error=reason)


def _validated(thresholds: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    by_name = {check.name: check for check in CHECKS}
    unknown = sorted(set(thresholds) - set(by_name))
    if unknown:
        raise UserError(
            f"thresholds given for unknown check {', '.join(unknown)}.",
            hint="`pgwarden doctor --list` names every check and its thresholds.",
        )
    validated = {}
    for name, values in thresholds.items():
        accepted = threshold_names(by_name[name])
        wrong = sorted(set(values) - set(accepted))
        if wrong:
            raise UserError(
                f"check {name} has no threshold {', '.join(wrong)}.",
                hint=f"Its thresholds are: {', '.join(accepted) or 'none'}.",
            )
        validated[name] = dict(values)
    return validated
