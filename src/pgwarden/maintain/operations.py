"""What a maintenance run reports: one :class:`Operation` per statement, in a report.

Every command of :mod:`pgwarden.maintain` returns a :class:`MaintenanceReport`: the
session settings it ran with, one operation per statement (planned in a dry run, else
``ok`` or ``failed`` with the error, how long it took, and for a lock timeout the
sessions that held the lock), and warnings about what the run may cost or left behind.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

from pgwarden.maintain.tables import Index, Table

__all__ = ["LockHolder", "MaintenanceReport", "Operation", "Status"]

Status = Literal["planned", "ok", "failed"]


@dataclass(frozen=True)
class LockHolder:
    """A session that held a lock a maintenance statement waited for.

    ``mode`` is the lock it holds (``AccessExclusiveLock``), or ``None`` for a
    transaction that ``REINDEX CONCURRENTLY`` waited to finish, which holds no lock on
    the table. ``query`` is its current or last statement, cut to 200 characters.
    """

    pid: int
    user: str | None
    application: str | None
    backend_type: str | None
    state: str | None
    mode: str | None
    xact_start: dt.datetime | None
    query: str | None


@dataclass(frozen=True)
class Operation:
    """One maintenance statement on one table or index, planned or run.

    ``target`` holds the figures read when the run was planned (size, dead tuples).
    ``seconds`` is how long the statement ran; ``error`` and ``hint`` say why it failed
    and what to do; ``blockers`` lists the sessions in the way of a lock timeout;
    ``warnings`` holds the server's warnings (a table skipped for lack of privilege, an
    invalid index skipped) and anything the failure left behind.
    """

    command: str
    target: Table | Index
    statement: str
    status: Status = "planned"
    seconds: float | None = None
    error: str | None = None
    hint: str | None = None
    blockers: list[LockHolder] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MaintenanceReport:
    """The outcome of one ``vacuum``, ``analyze`` or ``reindex`` call.

    ``settings`` are the session settings the statements run with, as ``SET`` would
    take them (``{"lock_timeout": "5000ms", "statement_timeout": "0"}``); in a dry run
    nothing ran and every operation is ``planned``. ``warnings`` are about the run as a
    whole: locks it takes, indexes it skipped. ``below_threshold`` counts the tables a
    dead-tuple threshold left alone.
    """

    command: str
    dry_run: bool
    settings: dict[str, str]
    operations: list[Operation]
    warnings: list[str] = field(default_factory=list)
    below_threshold: int = 0

    @property
    def failed(self) -> list[Operation]:
        """Return the operations that failed."""
        return [op for op in self.operations if op.status == "failed"]

    @property
    def ok(self) -> bool:
        """Return whether no operation failed."""
        return not self.failed

    @property
    def statements(self) -> list[str]:
        """Return every statement of the run, session settings first, as SQL to paste."""
        sets = [f"SET {name} = '{value}'" for name, value in self.settings.items()]
        return [*sets, *(op.statement for op in self.operations)]
