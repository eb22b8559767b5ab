"""Tell Sentry about slow queries and N+1s: breadcrumbs on events, spans on transactions.

    from pgwarden.observe.sentry import install_sentry

    sentry_sdk.init(...)
    install_sentry()

Each slow query (see :func:`pgwarden.observe.instrument`) becomes a breadcrumb
``query.slow`` naming the call site and the duration, and, inside a transaction, a child
span of the span running then; each N+1 a unit of work reports becomes a breadcrumb
``query.nplusone`` and is counted in the current span's data. The statement goes to
Sentry normalized (``$1`` for every literal and parameter): never a parameter's value.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pgwarden.observe.callsite import CallSite
from pgwarden.observe.fingerprints import fingerprint, normalize
from pgwarden.observe.instrument import on_slow_query, remove_slow_query_hook
from pgwarden.observe.nplusone import NPlusOneFinding, on_findings, remove_findings_hook

__all__ = ["install_sentry", "uninstall_sentry"]

log = logging.getLogger("pgwarden.observe.sentry")
_STATEMENT_CHARS = 1000
_options = {"installed": False, "breadcrumbs": True, "spans": True}


def install_sentry(*, breadcrumbs: bool = True, spans: bool = True) -> bool:
    """Send slow queries and N+1s to Sentry; return False if ``sentry_sdk`` is not installed.

    Idempotent: a second call only changes ``breadcrumbs`` and ``spans``. Nothing is
    sent until ``sentry_sdk.init`` has set up a client, and only what that client's
    sampling and ``before_breadcrumb`` let through.
    """
    try:
        import sentry_sdk  # noqa: F401
    except ImportError:
        return False
    _options.update(breadcrumbs=breadcrumbs, spans=spans)
    if not _options["installed"]:
        on_slow_query(_slow_query)
        on_findings(_findings)
        _options["installed"] = True
    return True


def uninstall_sentry() -> None:
    """Stop sending anything to Sentry."""
    _options.update(installed=False, breadcrumbs=False, spans=False)
    remove_findings_hook(_findings)
    remove_slow_query_hook(_slow_query)


def _slow_query(
    instrumentation: Any, statement: str, seconds: float, site: CallSite | None
) -> None:
    if not (_options["breadcrumbs"] or _options["spans"]):
        return
    try:
        _send_slow_query(instrumentation, statement, seconds, site)
    except Exception:  # reporting must never fail the query it reports on
        log.debug("could not send a slow query to Sentry", exc_info=True)


def _send_slow_query(
    instrumentation: Any, statement: str, seconds: float, site: CallSite | None
) -> None:
    import sentry_sdk

    where = site.location if site else "an unknown line"
    millis = round(seconds * 1000.0, 1)
    data = {
        "engine": getattr(instrumentation, "name", None),
        "duration_ms": millis,
        "call_site": where,
        "fingerprint": fingerprint(statement),
        "query": normalize(statement)[:_STATEMENT_CHARS],
    }
    if _options["breadcrumbs"]:
        sentry_sdk.add_breadcrumb(
            category="query.slow",
            type="query",
            level="warning",
            message=f"slow query {millis} ms at {where}",
            data=data,
        )
    span = sentry_sdk.get_current_span() if _options["spans"] else None
    if span is not None:
        ended = datetime.now(UTC)
        child = span.start_child(
            op="db.query.slow",
            name=data["query"],
            start_timestamp=ended - timedelta(seconds=seconds),
        )
        for key, value in data.items():
            child.set_data(f"pgwarden.{key}", value)
        if site is not None:
            child.set_data("code.filepath", site.filename)
            child.set_data("code.lineno", site.lineno)
            child.set_data("code.function", site.function)
        child.finish(end_timestamp=ended)


def _findings(findings: list[NPlusOneFinding]) -> None:
    if not (_options["breadcrumbs"] or _options["spans"]):
        return
    try:
        _send_findings(findings)
    except Exception:  # reporting must never fail the unit of work it reports on
        log.debug("could not send N+1 findings to Sentry", exc_info=True)


def _send_findings(findings: list[NPlusOneFinding]) -> None:
    import sentry_sdk

    # A repeated statement is quoted normalized: an inlined literal may be personal data.
    findings = [
        replace(finding, statement=normalize(finding.statement)) if finding.statement else finding
        for finding in findings
    ]
    if _options["breadcrumbs"]:
        for finding in findings:
            sentry_sdk.add_breadcrumb(
                category="query.nplusone",
                level="warning",
                message=finding.message(),
                data={
                    "kind": finding.kind,
                    "count": finding.count,
                    "relationship": finding.relationship,
                    "call_site": finding.trigger.location if finding.trigger else None,
                    "fix": finding.fix,
                },
            )
    span = sentry_sdk.get_current_span() if _options["spans"] else None
    if span is not None:
        span.set_data("pgwarden.nplusone", len(findings))
        span.set_data("pgwarden.nplusone_findings", [f.message() for f in findings])
