"""Alembic migrations, run safely: status, history, upgrade, downgrade, checks, batches.

- :mod:`pgwarden.schema.status`: :func:`status` and :func:`history`;
- :mod:`pgwarden.schema.migrate`: :func:`upgrade` (a backup first, lock and statement
  timeouts, retries of a lock timeout, each revision timed) and :func:`downgrade`
  (refused when it would drop data, unless forced);
- :mod:`pgwarden.schema.check`: :func:`check`, one head, a downgrade each, round
  trips on a scratch database, the models in step with the migrations;
- :mod:`pgwarden.schema.batches`: :func:`batched_update` for data migrations;
- :mod:`pgwarden.schema.environment`: :func:`init_environment`, an async Alembic
  environment on pgwarden's settings and engines.

Alembic is the ``migrations`` extra: ``pip install 'pgwarden[migrations]'``. See
``docs/migrations.md``.
"""

from __future__ import annotations

from pgwarden.schema.batches import BatchedUpdate, BatchProgress, batched_update
from pgwarden.schema.check import CheckProblem, MigrationCheck, check, load_models
from pgwarden.schema.drops import DataLoss
from pgwarden.schema.environment import InitializedEnvironment, init_environment
from pgwarden.schema.errors import (
    DowngradeRefused,
    MigrationFailed,
    MigrationLockTimeout,
    MigrationsNotFound,
    RevisionNotFound,
)
from pgwarden.schema.migrate import (
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_STATEMENT_TIMEOUT,
    AppliedRevision,
    MigrationProgress,
    MigrationResult,
    downgrade,
    upgrade,
)
from pgwarden.schema.status import MigrationStatus, Revision, history, status

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_STATEMENT_TIMEOUT",
    "AppliedRevision",
    "BatchProgress",
    "BatchedUpdate",
    "CheckProblem",
    "DataLoss",
    "DowngradeRefused",
    "InitializedEnvironment",
    "MigrationCheck",
    "MigrationFailed",
    "MigrationLockTimeout",
    "MigrationProgress",
    "MigrationResult",
    "MigrationStatus",
    "MigrationsNotFound",
    "Revision",
    "RevisionNotFound",
    "batched_update",
    "check",
    "downgrade",
    "history",
    "init_environment",
    "load_models",
    "status",
    "upgrade",
]
