"""What an import reports: the whole run, each table, and each refused row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.exc import DBAPIError

__all__ = ["ImportReport", "ImportedTable", "Mode", "RowError", "is_row_level", "row_error"]

Mode = Literal["insert", "upsert", "replace"]

# SQLSTATE classes of errors a row's values cause: data exceptions (22), integrity
# constraints (23), a second change of one row in one statement (21), a trigger's RAISE.
_ROW_LEVEL = ("21", "22", "23", "P0")


@dataclass(frozen=True)
class RowError:
    """A row (or a statement) the target refused, and why.

    ``row`` is the row's number in the file (1 for the first data row), ``key`` its key
    as written in the file; both ``None`` for an error not tied to one row.
    """

    row: int | None
    key: dict[str, Any] | None
    error: str
    detail: str | None = None
    constraint: str | None = None


@dataclass
class ImportedTable:
    """What an import did, or would do, to one table.

    ``unchanged`` rows matched a row with the same values; ``conflicts`` (insert mode)
    had a key already present, the first of them in ``conflict_keys``; ``failed`` rows
    were refused, the first of them in ``errors``.
    """

    table: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    conflicts: int = 0
    conflict_keys: list[dict[str, Any]] = field(default_factory=list)
    failed: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Return whether the table imports cleanly: no conflicts and no errors."""
        return not self.conflicts and not self.errors and not self.failed

    def counts(self) -> dict[str, int]:
        """Return the counts a run records for the table."""
        return {
            "rows": self.rows,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
        }


@dataclass
class ImportReport:
    """What an import did (``run_id`` names its run) or, with ``dry_run``, would do."""

    mode: Mode
    dry_run: bool
    source: dict[str, Any]
    tables: list[ImportedTable]
    run_id: int | None = None
    warnings: list[str] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Return whether every table imports cleanly."""
        return not self.errors and all(table.ok for table in self.tables)

    @property
    def totals(self) -> dict[str, int]:
        """Return the counts summed over the tables."""
        names = ("rows", "inserted", "updated", "unchanged", "deleted", "conflicts", "failed")
        return {name: sum(getattr(table, name) for table in self.tables) for name in names}


def row_error(error: DBAPIError, row: int | None = None, key: Any = None) -> RowError:
    """Return the server's account of ``error`` as a :class:`RowError`."""
    diag = getattr(error.orig, "diag", None)
    primary = getattr(diag, "message_primary", None) or str(error.orig or error).splitlines()[0]
    return RowError(
        row=row,
        key=key,
        error=primary,
        detail=getattr(diag, "message_detail", None),
        constraint=getattr(diag, "constraint_name", None),
    )


def is_row_level(error: DBAPIError) -> bool:
    """Return whether ``error`` is one a row's values cause (not a lost connection, say)."""
    state = getattr(error.orig, "sqlstate", None) or ""
    return state[:2] in _ROW_LEVEL
