"""Errors of the migration linter."""

from __future__ import annotations

from pgwarden.errors import PgwardenError, UserError

__all__ = ["LintTargetInvalid", "SquawkFailed"]


class LintTargetInvalid(UserError):
    """Raise when what to lint cannot be read: a missing file, a bad Alembic setup."""


class SquawkFailed(PgwardenError):
    """Raise when squawk ran but did not answer with its JSON report."""
