"""Errors of observation, all within pgwarden's one tree."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgwarden.errors import PgwardenError

if TYPE_CHECKING:
    from pgwarden.observe.nplusone import NPlusOneFinding

__all__ = ["NPlusOneDetected"]


class NPlusOneDetected(PgwardenError):
    """Raise at the end of a watch in ``raise`` mode that found N+1 queries."""

    def __init__(self, findings: list[NPlusOneFinding]) -> None:
        self.findings = findings
        report = "\n".join(f"- {finding.message()}" for finding in findings)
        super().__init__(
            f"{len(findings)} N+1 pattern(s) found:\n{report}",
            hint="Add the loader option named to the query named, or allow-list the pattern.",
        )
