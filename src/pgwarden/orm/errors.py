"""Errors of the ORM patterns: pagination, and statement or lock timeouts that fired."""

from __future__ import annotations

from pgwarden.errors import PgwardenError, UserError

__all__ = ["InvalidCursor", "LockTimeout", "StatementTimeout", "TimeoutFired", "UnpageableQuery"]


class InvalidCursor(UserError):
    """Raise when a page cursor was changed, signed with another secret, or made for
    another listing."""


class UnpageableQuery(UserError):
    """Raise when a query cannot be paged as asked: no ORDER BY, a LIMIT of its own, an
    ordering value a cursor cannot hold."""


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
