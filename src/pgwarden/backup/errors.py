"""Errors of backups, their storage and their locks, all within pgwarden's one tree."""

from __future__ import annotations

from pgwarden.errors import PgwardenError, UserError

__all__ = [
    "InvalidKey",
    "LockHeld",
    "LockLost",
    "ObjectChanged",
    "ObjectExists",
    "ObjectNotFound",
    "StorageError",
    "StorageUnusable",
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
    """Raise when another process holds the lock a backup or an expire needs."""


class LockLost(PgwardenError):
    """Raise when a held lock was taken over or removed by someone else."""
