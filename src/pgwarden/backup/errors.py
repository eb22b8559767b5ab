"""Errors of backups, their storage and their locks, all within pgwarden's one tree."""

from __future__ import annotations

from pgwarden.errors import PgwardenError, UserError

__all__ = [
    "BackupNotFound",
    "BaseBackupFailed",
    "ChecksumMismatch",
    "DumpFailed",
    "IndexCorrupt",
    "IntegrityFailed",
    "InvalidKey",
    "LockHeld",
    "LockLost",
    "ManifestInvalid",
    "ObjectChanged",
    "ObjectExists",
    "ObjectNotFound",
    "RecoveryFailed",
    "RestoreFailed",
    "RowCountMismatch",
    "StorageError",
    "StorageUnusable",
    "TargetNotEmpty",
    "WalConflict",
    "WalMissing",
]


class StorageError(PgwardenError):
    """Raise when a storage operation fails: an I/O error, a server error after retries."""


class StorageUnusable(UserError):
    """Raise when a storage cannot be used as configured.

    A missing bucket or directory that cannot be created, credentials the server refuses,
    permission denied, an endpoint that cannot be reached: the user fixes the setting.
    """


class InvalidKey(UserError):
    """Raise when an object key is not a clean relative path (``..``, ``/x``, ``a//b``)."""


class ObjectNotFound(StorageError):
    """Raise when a key names no object in the storage."""


class ObjectExists(StorageError):
    """Raise when a create-if-absent finds an object already under the key."""


class ObjectChanged(StorageError):
    """Raise when a conditional replace or delete finds another version than expected."""


class LockHeld(PgwardenError):
    """Raise when another process holds the lock a backup or an expire needs.

    Exit code 4: nothing is wrong, another run is busy; a scheduler may retry later.
    """

    exit_code = 4


class LockLost(PgwardenError):
    """Raise when a held lock was taken over or removed by someone else."""


# -- logical backups and restores -----------------------------------------------------


class BackupNotFound(UserError):
    """Raise when no backup in the storage has the id asked for."""


class TargetNotEmpty(UserError):
    """Raise when a restore would write into a database that already holds tables."""


class DumpFailed(PgwardenError):
    """Raise when pg_dump fails; no manifest is written, so the backup stays incomplete."""


class RestoreFailed(PgwardenError):
    """Raise when pg_restore fails; in one transaction, the target is left as it was."""


class IntegrityFailed(PgwardenError):
    """Raise when a backup is not what its manifest says: damaged, cut short, tampered.

    Exit code 3 for every integrity failure, so that a monitor tells a bad backup from
    a failed run.
    """

    exit_code = 3


class ChecksumMismatch(IntegrityFailed):
    """Raise when a stored file's size or SHA-256 differs from the manifest's."""


class ManifestInvalid(IntegrityFailed):
    """Raise when a backup's ``manifest.json`` is not a valid manifest of that backup.

    A manifest is read from storage, which others may write to: it is checked against
    a strict schema before anything is done with it, and a bad one is refused whole.
    """


class RowCountMismatch(IntegrityFailed):
    """Raise when a restored table holds another number of rows than was backed up.

    ``result`` is the :class:`~pgwarden.backup.restore.RestoreResult` with every check.
    """

    result: object = None


class IndexCorrupt(IntegrityFailed):
    """Raise when amcheck finds a B-tree index of a restored backup inconsistent."""


# -- WAL archiving and point-in-time recovery -------------------------------------------


class WalConflict(IntegrityFailed):
    """Raise when a WAL file differs from the one archived under the same name.

    The archived file is never overwritten: two clusters writing into one archive, or a
    cluster restored without a new timeline, would otherwise destroy recoverable history.
    """


class WalMissing(UserError):
    """Raise when a WAL file a restore needs is not in the archive; nothing is started."""


class RecoveryFailed(PgwardenError):
    """Raise when a restored server stops or fails before reaching its recovery target."""


class BaseBackupFailed(PgwardenError):
    """Raise when pg_basebackup fails; no manifest is written, the backup stays incomplete."""
