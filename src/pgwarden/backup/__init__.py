"""Back up PostgreSQL databases: storage, encryption, retention and locking.

The foundations the backup commands build on:

- :mod:`pgwarden.backup.storage`: a local directory or an S3 bucket, streamed both ways
  (:func:`open_storage`);
- :mod:`pgwarden.backup.crypto`: chunked, authenticated AES-256-GCM streams
  (:func:`encrypt_stream`, :func:`decrypt_stream`);
- :mod:`pgwarden.backup.retention`: grandfather-father-son plans (:func:`plan_retention`);
- :mod:`pgwarden.backup.lock`: one backup or expire at a time (:class:`Lock`).

See ``docs/backup.md``.
"""

from __future__ import annotations

from pgwarden.backup.crypto import BackupKeyring, decrypt_stream, encrypt_stream, read_key_id
from pgwarden.backup.errors import (
    InvalidKey,
    LockHeld,
    LockLost,
    ObjectChanged,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    StorageUnusable,
)
from pgwarden.backup.lock import Lock, LockRecord, break_lock, read_lock
from pgwarden.backup.retention import (
    BackupRecord,
    Decision,
    RetentionPlan,
    RetentionPolicy,
    plan_retention,
)
from pgwarden.backup.storage import LocalStorage, ObjectInfo, Storage, open_storage

__all__ = [
    "BackupKeyring",
    "BackupRecord",
    "Decision",
    "InvalidKey",
    "LocalStorage",
    "Lock",
    "LockHeld",
    "LockLost",
    "LockRecord",
    "ObjectChanged",
    "ObjectExists",
    "ObjectInfo",
    "ObjectNotFound",
    "RetentionPlan",
    "RetentionPolicy",
    "Storage",
    "StorageError",
    "StorageUnusable",
    "break_lock",
    "decrypt_stream",
    "encrypt_stream",
    "open_storage",
    "plan_retention",
    "read_key_id",
    "read_lock",
]
