"""Errors of the ORM patterns: a statement or lock timeout that fired."""

from __future__ import annotations

__all__ = ["LockTimeout", "StatementTimeout", "TimeoutFired"]

from pgwarden.errors import PgwardenError


class TimeoutFired(PgwardenError):
    """Raise when the server cancelled a statement because a timeout pgwarden set fired.

    ``statement`` is the statement's text, secrets redacted and cut to a readable length
    (never its parameters); ``setting`` is ``statement_timeout`` or ``lock_timeout``;
    ``timeout_ms`` the value in force, None when set outside pgwarden and unknown.
    The transaction it ran in is aborted: roll it back.
    """

    setting = ""

    def __init__(
        self, message: str, *, statement: str, timeout_ms: int | None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.statement = statement
        self.timeout_ms = timeout_ms


class StatementTimeout(TimeoutFired):
    """Raise when a statement ran longer than its ``statement_timeout``."""

    setting = "statement_timeout"


class LockTimeout(TimeoutFired):
    """Raise when a statement waited longer than its ``lock_timeout`` for a lock."""

    setting = "lock_timeout"
