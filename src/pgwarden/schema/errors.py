"""Errors of the migrations: a missing Alembic setup, a refused downgrade, a lock not won."""

from __future__ import annotations

from pgwarden.errors import PgwardenError, UserError

__all__ = [
    "DowngradeRefused",
    "MigrationFailed",
    "MigrationLockTimeout",
    "MigrationsNotFound",
    "RevisionNotFound",
]


class MigrationsNotFound(UserError):
    """Raise when no Alembic config or script directory is where it was looked for."""


class RevisionNotFound(UserError):
    """Raise when a revision id, head or relative step names no revision."""


class DowngradeRefused(UserError):
    """Raise when a downgrade would drop tables or columns that hold rows."""


class MigrationLockTimeout(PgwardenError):
    """Raise when a migration could not take its locks within every retry."""


class MigrationFailed(PgwardenError):
    """Raise when a migration fails in the database for a reason other than a lock."""
