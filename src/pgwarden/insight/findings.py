"""The shapes every health check reports in: a finding, and the result of one check.

A check turns the rows of an area's query (an unused index, a sequence near its
maximum) into :class:`Finding` objects a person can act on: what is wrong, why it
matters, and the SQL or setting that fixes it. A check that cannot run (a missing
privilege, an extension not installed) returns a :class:`CheckResult` whose ``skipped``
says why, so a report never looks clean only because nothing was looked at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from pgwarden.insight.errors import CheckSkipped

__all__ = [
    "Check",
    "CheckResult",
    "CheckSkipped",
    "Finding",
    "Severity",
    "run_check",
    "run_checks",
]

Severity = Literal["info", "warning", "critical"]

# SQLSTATE of "insufficient privilege": a check that hits it is skipped, not failed.
_INSUFFICIENT_PRIVILEGE = "42501"


@dataclass(frozen=True)
class Finding:
    """One problem a check found, with what to do about it.

    ``what`` is one line naming the object and the figure; ``why`` says what it costs;
    ``fix`` is SQL or a setting a user can run, or ``None`` when no statement fixes it;
    ``subject`` is the qualified name of the object, for grouping and filtering.
    """

    check: str
    severity: Severity
    what: str
    why: str
    fix: str | None
    subject: str | None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckResult:
    """The findings of one check, or why it was skipped, or the error that stopped it."""

    check: str
    findings: list[Finding]
    skipped: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Check:
    """One named check: a function from a connection (and thresholds) to findings.

    ``findings(conn, **thresholds)`` does the work; calling the check runs it through
    :func:`run_check`, so a missing privilege or extension makes it skipped, not failed.
    ``area`` is the module it belongs to (``indexes``, ``activity``); ``summary`` is one
    line for listings such as ``pgwarden doctor --list``. ``scope`` is ``"cluster"`` for
    a check whose answer is the same from every database of a server (connections,
    replication, settings), so a run over many databases makes it once.
    """

    name: str
    area: str
    summary: str
    findings: Callable[..., Iterable[Finding]]
    scope: Literal["database", "cluster"] = "database"

    def __call__(
        self, conn: Connection, *, savepoint: bool = True, **thresholds: Any
    ) -> CheckResult:
        """Run the check with ``thresholds`` overriding its keyword defaults.

        ``savepoint=False`` is for a caller that rolls back the whole transaction after
        the check anyway: one round trip less on each side of it.
        """
        return run_check(
            conn, self.name, lambda c: self.findings(c, **thresholds), savepoint=savepoint
        )


def run_check(
    conn: Connection,
    check: str,
    findings: Callable[[Connection], Iterable[Finding]],
    *,
    savepoint: bool = True,
) -> CheckResult:
    """Run one check in a savepoint; return it as skipped if a privilege is missing.

    A check that raises :class:`CheckSkipped` is skipped with its reason. Any other
    database error propagates: only a missing privilege is an expected reason for a
    check not to run. Without ``savepoint``, a failed check leaves the transaction
    aborted, for the caller to roll back.
    """
    try:
        with conn.begin_nested() if savepoint else nullcontext():
            return CheckResult(check, list(findings(conn)))
    except CheckSkipped as skipped:
        return CheckResult(check, [], skipped=skipped.reason)
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) != _INSUFFICIENT_PRIVILEGE:
            raise
        reason = str(error.orig).splitlines()[0]
        return CheckResult(check, [], skipped=f"{reason}: the role lacks a privilege it needs")


def run_checks(
    conn: Connection,
    checks: Iterable[Check],
    thresholds: Mapping[str, Mapping[str, Any]],
) -> list[CheckResult]:
    """Run ``checks`` in their order, each with the thresholds given under its name.

    Thresholds go by check name, never by position, so reordering a registry cannot
    hand one check another's thresholds. A name that is no check of ``checks`` is a
    ``ValueError``: a misspelt name would otherwise drop its thresholds without a word.
    """
    checks = list(checks)
    unknown = sorted(set(thresholds) - {check.name for check in checks})
    if unknown:
        raise ValueError(f"thresholds for no check of these: {', '.join(unknown)}")
    return [check(conn, **thresholds.get(check.name, {})) for check in checks]
