"""Keep what an instrumented application found: its N+1s and its slow statements, aggregated.

:func:`~pgwarden.observe.instrument` starts collecting (:func:`collect_reports`): each
N+1 a watch reports and each slow statement is folded into one record per pattern
(an N+1 by kind, line and relationship; a slow statement by fingerprint), kept in
memory, bounded. Reading them:

- in the same process (the admin router mounted in the app): :func:`nplusone_reports`
  and :func:`slow_statement_reports` return what this process saw;
- from another process (``pgwarden serve``): the application stores its records in its
  own database, in ``pgwarden.observed_nplusone`` and ``pgwarden.observed_statement``
  (``instrument(engine, store_reports=True)``, :mod:`pgwarden.observe.report_store`), and
  the same two functions, given a connection to that database, add what is stored to what
  this process has not stored yet.

Statements are kept as their normalized text (literals and parameters replaced by
``$n``), never with a value in them.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from sqlalchemy.engine import Connection

from pgwarden.observe.callsite import CallSite
from pgwarden.observe.fingerprints import fingerprint, normalize
from pgwarden.observe.nplusone import NPlusOneFinding, on_findings
from pgwarden.urls import redact_text

__all__ = [
    "NPlusOneReport",
    "SlowStatementReport",
    "collect_reports",
    "forget_reports",
    "nplusone_reports",
    "pending_reports",
    "slow_statement_reports",
]

SAMPLES = 500
"""How many of a statement's most recent durations its percentiles are computed over."""
_KEYS_LIMIT = 1000
_TEXT_LIMIT = 2000


@dataclass(frozen=True)
class NPlusOneReport:
    """One N+1 pattern of the application: where it is, how to fix it, how often it happened.

    ``file`` and ``line`` are the application line that triggered the extra queries (a
    path relative to the application's working directory when inside it); ``fix`` the
    loader option to add to the query at ``parent_query``. ``count`` is how many units
    of work (requests, tests) had it, ``queries`` how many extra statements they ran.
    """

    kind: Literal["lazy_load", "repeated_statement", "unused_eager_load"]
    file: str
    line: int
    function: str | None
    relationship: str | None
    fix: str | None
    parent_query: str | None
    statement: str | None
    count: int
    queries: int
    first_seen: dt.datetime
    last_seen: dt.datetime

    @property
    def location(self) -> str:
        """Return ``file:line``."""
        return f"{self.file}:{self.line}"

    @property
    def subject(self) -> str:
        """Return what tells this pattern from others at the same line."""
        return self.relationship or self.statement or ""


@dataclass(frozen=True)
class SlowStatementReport:
    """One statement shape that ran slower than the threshold, with its timings.

    The percentiles are over its ``SAMPLES`` most recent slow runs; ``count`` and
    ``max_ms`` over all of them.
    """

    fingerprint: str
    statement: str
    location: str | None
    count: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    first_seen: dt.datetime
    last_seen: dt.datetime
    samples_ms: tuple[float, ...] = field(default=(), repr=False)


def percentile(values: Iterable[float], fraction: float) -> float:
    """Return the nearest-rank ``fraction`` percentile of ``values`` (0 when empty)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _site_file(site: CallSite) -> str:
    return site.location.rpartition(":")[0]


class _Pending:
    """What this process saw and has not stored yet (all of it, when nothing stores)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.nplusone: dict[tuple[str, str, int, str], NPlusOneReport] = {}
        self.slow: dict[str, SlowStatementReport] = {}

    def add_findings(self, findings: list[NPlusOneFinding]) -> None:
        now = _now()
        for finding in findings:
            if finding.trigger is None:
                continue  # no application line to point at
            report = NPlusOneReport(
                kind=finding.kind,
                file=_site_file(finding.trigger),
                line=finding.trigger.lineno,
                function=finding.trigger.function,
                relationship=finding.relationship,
                fix=finding.fix,
                parent_query=finding.parent_query.location if finding.parent_query else None,
                statement=_statement_text(finding.statement) if finding.statement else None,
                count=1,
                queries=finding.count,
                first_seen=now,
                last_seen=now,
            )
            with self.lock:
                key = (report.kind, report.file, report.line, report.subject)
                held = self.nplusone.get(key)
                self.nplusone[key] = merge_nplusone(held, report) if held else report
                _bound(self.nplusone)

    def add_slow(self, statement: str, seconds: float, site: CallSite | None) -> None:
        now = _now()
        ms = seconds * 1000.0
        shape = fingerprint(statement)
        report = SlowStatementReport(
            fingerprint=shape,
            statement=_statement_text(statement),
            location=site.location if site else None,
            count=1,
            p50_ms=ms,
            p95_ms=ms,
            max_ms=ms,
            first_seen=now,
            last_seen=now,
            samples_ms=(ms,),
        )
        with self.lock:
            held = self.slow.get(shape)
            self.slow[shape] = merge_slow(held, report) if held else report
            _bound(self.slow)

    def drain(self) -> tuple[list[NPlusOneReport], list[SlowStatementReport]]:
        with self.lock:
            taken = list(self.nplusone.values()), list(self.slow.values())
            self.nplusone, self.slow = {}, {}
        return taken

    def give_back(self, nplusone: list[NPlusOneReport], slow: list[SlowStatementReport]) -> None:
        """Put back records a store could not write, merged with what came since."""
        with self.lock:
            for report in nplusone:
                key = (report.kind, report.file, report.line, report.subject)
                held = self.nplusone.get(key)
                self.nplusone[key] = merge_nplusone(report, held) if held else report
            for item in slow:
                kept = self.slow.get(item.fingerprint)
                self.slow[item.fingerprint] = merge_slow(item, kept) if kept else item
            _bound(self.nplusone)
            _bound(self.slow)


def _bound(table: dict[Any, Any]) -> None:
    # Past the limit the records seen longest ago go: memory stays bounded in a long run.
    while len(table) > _KEYS_LIMIT:
        oldest = min(table, key=lambda key: table[key].last_seen)
        del table[oldest]


def _statement_text(statement: str) -> str:
    return redact_text(" ".join(normalize(statement).split()))[:_TEXT_LIMIT]


def merge_nplusone(older: NPlusOneReport, newer: NPlusOneReport) -> NPlusOneReport:
    """Return one record of the same pattern seen in ``older`` and then in ``newer``."""
    return replace(
        newer,
        count=older.count + newer.count,
        queries=older.queries + newer.queries,
        first_seen=min(older.first_seen, newer.first_seen),
        last_seen=max(older.last_seen, newer.last_seen),
    )


def merge_slow(older: SlowStatementReport, newer: SlowStatementReport) -> SlowStatementReport:
    """Return one record of the statement timed in ``older`` and then in ``newer``."""
    samples = (older.samples_ms + newer.samples_ms)[-SAMPLES:]
    return replace(
        newer,
        location=newer.location or older.location,
        count=older.count + newer.count,
        p50_ms=percentile(samples, 0.5),
        p95_ms=percentile(samples, 0.95),
        max_ms=max(older.max_ms, newer.max_ms),
        first_seen=min(older.first_seen, newer.first_seen),
        last_seen=max(older.last_seen, newer.last_seen),
        samples_ms=samples,
    )


_pending = _Pending()
_collecting = False
_collect_lock = threading.Lock()


def _on_slow(instrumentation: Any, statement: str, seconds: float, site: CallSite | None) -> None:
    if getattr(instrumentation, "reports", True):
        _pending.add_slow(statement, seconds, site)


def collect_reports() -> None:
    """Start folding this process's N+1 findings and slow statements into reports.

    :func:`~pgwarden.observe.instrument` calls it; calling it again does nothing.
    """
    global _collecting
    with _collect_lock:
        if _collecting:
            return
        from pgwarden.observe.instrument import on_slow_query

        on_findings(_pending.add_findings)
        on_slow_query(_on_slow)
        _collecting = True


def pending_reports() -> tuple[list[NPlusOneReport], list[SlowStatementReport]]:
    """Return the records this process holds and has not stored, without taking them."""
    with _pending.lock:
        return list(_pending.nplusone.values()), list(_pending.slow.values())


def forget_reports() -> None:
    """Drop the records this process holds and has not stored (between tests, say)."""
    _pending.drain()


def nplusone_reports(conn: Connection | None = None, *, limit: int = 100) -> list[NPlusOneReport]:
    """Return the N+1 patterns seen, most recently seen first.

    Without ``conn``, what this process saw; with it, also what is stored in that
    database's ``pgwarden.observed_nplusone`` (by this process or any other).
    """
    from pgwarden.observe.report_store import stored_nplusone

    found = {
        (r.kind, r.file, r.line, r.subject): r for r in (stored_nplusone(conn) if conn else [])
    }
    for report in pending_reports()[0]:
        key = (report.kind, report.file, report.line, report.subject)
        held = found.get(key)
        found[key] = merge_nplusone(held, report) if held else report
    ordered = sorted(found.values(), key=lambda r: (r.last_seen, r.count), reverse=True)
    return ordered[:limit]


def slow_statement_reports(
    conn: Connection | None = None, *, limit: int = 100
) -> list[SlowStatementReport]:
    """Return the slow statement shapes seen, slowest (by p95) first.

    Without ``conn``, what this process saw; with it, also what is stored in that
    database's ``pgwarden.observed_statement``.
    """
    from pgwarden.observe.report_store import stored_statements

    found = {r.fingerprint: r for r in (stored_statements(conn) if conn else [])}
    for report in pending_reports()[1]:
        held = found.get(report.fingerprint)
        found[report.fingerprint] = merge_slow(held, report) if held else report
    ordered = sorted(found.values(), key=lambda r: (r.p95_ms, r.count), reverse=True)
    return ordered[:limit]
