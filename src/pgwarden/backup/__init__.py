"""Back up PostgreSQL databases: storage, encryption, retention and locking.

The foundations the backup commands build on:

- :mod:`pgwarden.backup.storage`: a local directory or an S3 bucket, streamed both ways
  (:func:`open_storage`);
- :mod:`pgwarden.backup.crypto`: chunked, authenticated AES-256-GCM streams
  (:func:`encrypt_stream`, :func:`decrypt_stream`);
- :mod:`pgwarden.backup.retention`: grandfather-father-son plans (:func:`plan_retention`);
- :mod:`pgwarden.backup.lock`: one backup or expire at a time (:class:`Lock`).

Logical backups, built on them:

- :mod:`pgwarden.backup.logical`: :func:`create_backup` with pg_dump, row counts in the
  dump's snapshot;
- :mod:`pgwarden.backup.restore`: :func:`restore_backup`, proved before the target is
  touched; :func:`backup_contents`;
- :mod:`pgwarden.backup.verify`: :func:`verify_backup` into a scratch database;
- :mod:`pgwarden.backup.catalog`: :func:`list_backups`, :func:`backup_info`,
  :func:`pin_backup`, :func:`delete_backup`, :func:`expire_backups`;
- :mod:`pgwarden.backup.manifest`: the storage layout and the manifest.

Point-in-time recovery, on the same storage, keys and catalogue:

- :mod:`pgwarden.backup.wal`: WAL archiving, :func:`push_wal`, :func:`fetch_wal`, the
  spool and its long-lived archiver;
- :mod:`pgwarden.backup.physical`: :func:`create_base_backup` with pg_basebackup;
- :mod:`pgwarden.backup.pitr`: :func:`restore_pitr` to a :class:`RecoveryTarget`;
- :mod:`pgwarden.backup.pitr_setup`, :mod:`~pgwarden.backup.pitr_status`,
  :mod:`~pgwarden.backup.pitr_drill`, :mod:`~pgwarden.backup.pitr_retention`: setup and
  check of archiving, the recoverable window, restore drills, WAL retention.

See ``docs/backup.md`` and ``docs/pitr.md``.
"""

from __future__ import annotations

from pgwarden.backup.catalog import (
    BackupEntry,
    backup_info,
    delete_backup,
    expire_backups,
    find_backup,
    list_backups,
    pin_backup,
    unpin_backup,
)
from pgwarden.backup.crypto import BackupKeyring, decrypt_stream, encrypt_stream, read_key_id
from pgwarden.backup.errors import (
    BackupNotFound,
    BaseBackupFailed,
    ChecksumMismatch,
    DumpFailed,
    IndexCorrupt,
    IntegrityFailed,
    InvalidKey,
    LockHeld,
    LockLost,
    ObjectChanged,
    ObjectExists,
    ObjectNotFound,
    RecoveryFailed,
    RestoreFailed,
    RowCountMismatch,
    StorageError,
    StorageUnusable,
    TargetNotEmpty,
    WalConflict,
    WalMissing,
)
from pgwarden.backup.lock import Lock, LockRecord, break_lock, read_lock
from pgwarden.backup.logical import BackupResult, create_backup
from pgwarden.backup.manifest import Manifest, VerifyRecord
from pgwarden.backup.physical import BaseBackup, create_base_backup
from pgwarden.backup.pitr import RestoredCluster, restore_pitr
from pgwarden.backup.pitr_drill import run_drill
from pgwarden.backup.pitr_plan import RecoveryTarget, plan_restore
from pgwarden.backup.pitr_retention import WalExpiry, expire_wal
from pgwarden.backup.pitr_setup import archiving_plan, check_archiving
from pgwarden.backup.pitr_status import DrillRecord, PitrStatus, pitr_status
from pgwarden.backup.restore import RestoreResult, backup_contents, restore_backup
from pgwarden.backup.retention import (
    BackupRecord,
    Decision,
    RetentionPlan,
    RetentionPolicy,
    plan_retention,
)
from pgwarden.backup.storage import LocalStorage, ObjectInfo, Storage, open_storage
from pgwarden.backup.verify import verify_backup
from pgwarden.backup.wal import fetch_wal, push_wal

__all__ = [
    "BackupEntry",
    "BackupKeyring",
    "BackupNotFound",
    "BackupRecord",
    "BackupResult",
    "BaseBackup",
    "BaseBackupFailed",
    "ChecksumMismatch",
    "Decision",
    "DrillRecord",
    "DumpFailed",
    "IndexCorrupt",
    "IntegrityFailed",
    "InvalidKey",
    "LocalStorage",
    "Lock",
    "LockHeld",
    "LockLost",
    "LockRecord",
    "Manifest",
    "ObjectChanged",
    "ObjectExists",
    "ObjectInfo",
    "ObjectNotFound",
    "PitrStatus",
    "RecoveryFailed",
    "RecoveryTarget",
    "RestoreFailed",
    "RestoreResult",
    "RestoredCluster",
    "RetentionPlan",
    "RetentionPolicy",
    "RowCountMismatch",
    "Storage",
    "StorageError",
    "StorageUnusable",
    "TargetNotEmpty",
    "VerifyRecord",
    "WalConflict",
    "WalExpiry",
    "WalMissing",
    "archiving_plan",
    "backup_contents",
    "backup_info",
    "break_lock",
    "check_archiving",
    "create_backup",
    "create_base_backup",
    "decrypt_stream",
    "delete_backup",
    "encrypt_stream",
    "expire_backups",
    "expire_wal",
    "fetch_wal",
    "find_backup",
    "list_backups",
    "open_storage",
    "pin_backup",
    "pitr_status",
    "plan_restore",
    "plan_retention",
    "push_wal",
    "read_key_id",
    "read_lock",
    "restore_backup",
    "restore_pitr",
    "run_drill",
    "unpin_backup",
    "verify_backup",
]
