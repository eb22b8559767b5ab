"""The errors of :mod:`pgwarden.transfer`, raised by every room and caught by its callers.

Each carries a ``hint`` and an exit code (:class:`~pgwarden.errors.PgwardenError`).
:class:`BundleError` is a user error (a bundle missing, malformed or tampered with);
:class:`ImportFailed` carries the import's report, :class:`RollbackRefused` the rows that
changed after the run it would undo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgwarden.errors import PgwardenError, UserError

if TYPE_CHECKING:
    from pgwarden.transfer.journal.rollback import ChangedRow
    from pgwarden.transfer.load.reports import ImportReport

__all__ = ["BundleError", "ImportFailed", "RollbackRefused"]


class BundleError(UserError):
    """Raise when a bundle is missing, malformed, or its data does not match its manifest."""


class ImportFailed(PgwardenError):
    """Raise when rows conflict or break a constraint, so nothing was written; see ``report``."""

    def __init__(self, report: ImportReport) -> None:
        bad = [table.table for table in report.tables if not table.ok]
        super().__init__(
            f"the import failed on {', '.join(bad) or 'a deferred constraint'}; nothing was"
            " written.",
            hint="Run it again with --dry-run to list every offending row.",
        )
        self.report = report


class RollbackRefused(PgwardenError):
    """Raise when rows changed after the run; ``changed`` lists the first, ``total`` counts."""

    def __init__(
        self,
        run_id: int,
        changed: list[ChangedRow],
        total: int,
        note: str | None = None,
        *,
        by_xmin: bool = False,
    ) -> None:
        super().__init__(
            f"run {run_id} cannot be rolled back: {total} row(s) changed after it;"
            " nothing was changed." + (f" {note}" if note else ""),
            hint=(
                "Roll back later runs first. A row changed by other means stays changed:"
                " writing back the values the run left gives it a new xmin."
                if by_xmin
                else "Roll back later runs first, or put those rows back as the run left them."
            ),
        )
        self.run_id = run_id
        self.changed = changed
        self.total = total
