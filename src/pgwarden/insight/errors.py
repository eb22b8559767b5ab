"""Errors of the health checks.

A check that cannot run raises :class:`CheckSkipped`; :func:`~pgwarden.insight.findings.run_check`
turns it into a skipped result with the reason, so it never stops a doctor run. A missing
extension or privilege met outside a check is :class:`~pgwarden.errors.NotEnabled`.
"""

from __future__ import annotations

__all__ = ["CheckSkipped"]


class CheckSkipped(Exception):
    """Raised by a check that cannot run here, with the reason a report shows.

    For a missing extension or a server feature the check needs; the reason should say
    how to make the check possible (``CREATE EXTENSION pg_stat_statements``).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
