"""pgwarden keeps the PostgreSQL database behind a SQLAlchemy application fast,
observable and recoverable.

Every error pgwarden raises on purpose can be imported from here
(``from pgwarden import BackupNotFound``). Each area keeps its own in one module:

- :mod:`pgwarden.errors`: the root :class:`PgwardenError` and the errors shared by every
  area (connections, settings, programs, the embedded server, encryption keys);
- :mod:`pgwarden.backup.errors`, :mod:`pgwarden.observe.errors`,
  :mod:`pgwarden.insight.errors`, :mod:`pgwarden.advise.errors`,
  :mod:`pgwarden.transfer.errors`, :mod:`pgwarden.orm.errors`,
  :mod:`pgwarden.tasks.errors`, :mod:`pgwarden.schema.errors` and
  :mod:`pgwarden.cache.errors`.

An area's errors are imported when first asked for, so ``import pgwarden`` stays quick
and loads no area it does not need.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from pgwarden.errors import (
    BinaryNotFound,
    ConfigError,
    ConnectionFailed,
    DecryptionFailed,
    NotEnabled,
    PgwardenError,
    ServerError,
    ServerUnusable,
    UnknownKey,
    UserError,
)

if TYPE_CHECKING:
    from pgwarden.advise.errors import PlanFailed, UnusableQuery
    from pgwarden.api.errors import (
        JobNotFound,
        MigrationRunning,
        RateLimited,
        ScopeMissing,
        TokenNotFound,
        TokenRequired,
    )
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
        ManifestInvalid,
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
    from pgwarden.cache.errors import CacheError, NotCacheable, UnserializableValue
    from pgwarden.graphql.errors import LoadersMissing, UnsupportedRelationship
    from pgwarden.insight.errors import CheckSkipped
    from pgwarden.observe.errors import NPlusOneDetected
    from pgwarden.orm.errors import (
        InvalidCursor,
        LockTimeout,
        StatementTimeout,
        TimeoutFired,
        UnpageableQuery,
    )
    from pgwarden.schema.errors import (
        DowngradeRefused,
        MigrationFailed,
        MigrationLockTimeout,
        MigrationsNotFound,
        RevisionNotFound,
    )
    from pgwarden.schema.lint.errors import LintTargetInvalid, SquawkFailed
    from pgwarden.tasks.errors import TargetsInvalid, UnknownTarget
    from pgwarden.transfer.errors import BundleError, ImportFailed, RollbackRefused

try:
    __version__ = version("pgwarden")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

# Where each area's errors live: imported on first use (PEP 562).
_AREA_ERRORS: dict[str, tuple[str, ...]] = {
    "pgwarden.advise.errors": ("PlanFailed", "UnusableQuery"),
    "pgwarden.api.errors": (
        "JobNotFound",
        "MigrationRunning",
        "RateLimited",
        "ScopeMissing",
        "TokenNotFound",
        "TokenRequired",
    ),
    "pgwarden.backup.errors": (
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
        "MigrationFailed",
        "MigrationLockTimeout",
        "MigrationsNotFound",
        "ObjectChanged",
        "ObjectExists",
        "ObjectNotFound",
        "RestoreFailed",
        "RevisionNotFound",
        "RowCountMismatch",
        "StorageError",
        "StorageUnusable",
        "RecoveryFailed",
        "TargetNotEmpty",
        "WalConflict",
        "WalMissing",
    ),
    "pgwarden.graphql.errors": ("LoadersMissing", "UnsupportedRelationship"),
    "pgwarden.cache.errors": ("CacheError", "NotCacheable", "UnserializableValue"),
    "pgwarden.insight.errors": ("CheckSkipped",),
    "pgwarden.observe.errors": ("NPlusOneDetected",),
    "pgwarden.orm.errors": (
        "InvalidCursor",
        "LockTimeout",
        "StatementTimeout",
        "TimeoutFired",
        "UnpageableQuery",
    ),
    "pgwarden.schema.errors": (
        "DowngradeRefused",
        "MigrationFailed",
        "MigrationLockTimeout",
        "MigrationsNotFound",
        "RevisionNotFound",
    ),
    "pgwarden.schema.lint.errors": ("LintTargetInvalid", "SquawkFailed"),
    "pgwarden.tasks.errors": ("TargetsInvalid", "UnknownTarget"),
    "pgwarden.transfer.errors": ("BundleError", "ImportFailed", "RollbackRefused"),
}
_HOMES = {name: module for module, names in _AREA_ERRORS.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _HOMES.get(name)
    if module is None:
        raise AttributeError(f"module 'pgwarden' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "BackupNotFound",
    "BaseBackupFailed",
    "BinaryNotFound",
    "BundleError",
    "CacheError",
    "CheckSkipped",
    "ChecksumMismatch",
    "ConfigError",
    "ConnectionFailed",
    "DecryptionFailed",
    "DowngradeRefused",
    "DumpFailed",
    "ImportFailed",
    "IndexCorrupt",
    "IntegrityFailed",
    "InvalidCursor",
    "InvalidKey",
    "JobNotFound",
    "LintTargetInvalid",
    "LoadersMissing",
    "LockHeld",
    "LockLost",
    "LockTimeout",
    "ManifestInvalid",
    "MigrationFailed",
    "MigrationLockTimeout",
    "MigrationRunning",
    "MigrationsNotFound",
    "NPlusOneDetected",
    "NotCacheable",
    "NotEnabled",
    "ObjectChanged",
    "ObjectExists",
    "ObjectNotFound",
    "PgwardenError",
    "PlanFailed",
    "RateLimited",
    "RecoveryFailed",
    "RestoreFailed",
    "RevisionNotFound",
    "RollbackRefused",
    "RowCountMismatch",
    "ScopeMissing",
    "ServerError",
    "ServerUnusable",
    "SquawkFailed",
    "StatementTimeout",
    "StorageError",
    "StorageUnusable",
    "TargetNotEmpty",
    "TargetsInvalid",
    "TimeoutFired",
    "TokenNotFound",
    "TokenRequired",
    "UnknownKey",
    "UnknownTarget",
    "UnpageableQuery",
    "UnserializableValue",
    "UnsupportedRelationship",
    "UnusableQuery",
    "UserError",
    "WalConflict",
    "WalMissing",
    "__version__",
]
