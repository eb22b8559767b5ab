"""Prove a backup restores: into a scratch database, with row counts and amcheck.

:func:`verify_backup` restores a backup into a scratch database, created for the
purpose and always dropped, either on the server at ``url`` (``scratch="database"``)
or in an embedded PostgreSQL cluster started in a temporary directory
(``scratch="embedded"``, which needs no server at all). The restore proves every
stored file (sizes, SHA-256, authenticated decryption) as it streams, compares each
table's rows with the manifest's, and then runs amcheck's ``bt_index_check`` (with
``heapallindexed``) on every B-tree index when the extension can be created there.

The result is written to ``verify.json`` beside the manifest (which stays as it was),
success or failure; retention counts a backup verified only when it succeeded. The
restore runs without owners and privileges (``--no-owner --no-privileges``), since the
scratch database's server may lack the roles: verify proves the data, not the grants.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from pgwarden._sql import quote_identifier
from pgwarden.backup import _pgtools
from pgwarden.backup.catalog import complete_manifest, find_backup
from pgwarden.backup.crypto import BackupKeyring
from pgwarden.backup.errors import IndexCorrupt, IntegrityFailed, RestoreFailed
from pgwarden.backup.manifest import MANIFEST, VERIFY, AmcheckResult, VerifyRecord
from pgwarden.backup.progress import ProgressCallback, no_progress
from pgwarden.backup.restore import RestoreResult, restore_backup
from pgwarden.backup.storage import Storage
from pgwarden.errors import UserError
from pgwarden.urls import parse_database_url

__all__ = ["SCRATCH", "run_amcheck", "verify_backup"]

SCRATCH = ("database", "embedded")

BTREE_INDEXES = sa.text(
    """
SELECT c.oid,
       quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indexrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_am AS am ON am.oid = c.relam
WHERE am.amname = 'btree'
  AND c.relkind = 'i'
  AND i.indisvalid
  AND i.indisready
  AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_toast'
ORDER BY 2
"""
)
INDEX_CHECK = sa.text("SELECT bt_index_check(index => :oid, heapallindexed => true)")


def run_amcheck(url: str | URL) -> AmcheckResult:
    """Check every B-tree index of the database at ``url`` with amcheck.

    Creates the extension if it is missing; when it cannot be created (not installed,
    no privilege), the result says why and checks nothing.
    """
    engine = _pgtools.engine_for(url, application_name="pgwarden-verify")
    try:
        with _pgtools.connect(engine) as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            try:
                conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS amcheck"))
            except sa.exc.DBAPIError as exc:
                reason = str(exc.orig or exc).strip().splitlines()[0]
                return AmcheckResult(available=False, reason=f"amcheck unavailable: {reason}")
            failures = []
            indexes = conn.execute(BTREE_INDEXES).all()
            for row in indexes:
                try:
                    conn.execute(INDEX_CHECK, {"oid": row.oid})
                except sa.exc.DBAPIError as exc:
                    failures.append((row.name, str(exc.orig or exc).strip().splitlines()[0]))
            return AmcheckResult(
                available=True, indexes_checked=len(indexes), failures=tuple(failures)
            )
    finally:
        engine.dispose()


@contextmanager
def _scratch_database(url: str | URL, backup_id: str) -> Iterator[str]:
    """Create a scratch database on the server at ``url``; drop it whatever happens."""
    name = f"pgwarden_verify_{secrets.token_hex(6)}"
    admin = _pgtools.engine_for(url, application_name="pgwarden-verify")
    try:
        with _pgtools.connect(admin) as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            try:
                conn.execute(
                    sa.text(f"CREATE DATABASE {quote_identifier(name)} TEMPLATE template0")
                )
            except sa.exc.DBAPIError as exc:
                raise UserError(
                    f"cannot create a scratch database to verify backup {backup_id}: "
                    f"{str(exc.orig or exc).strip().splitlines()[0]}",
                    hint="Verify as a role with CREATEDB, or use --scratch embedded to "
                    "restore into a temporary embedded PostgreSQL instead.",
                ) from None
        try:
            yield (
                make_url(parse_database_url(url))
                .set(database=name)
                .render_as_string(hide_password=False)
            )
        finally:
            with _pgtools.connect(admin) as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                conn.execute(
                    sa.text(f"DROP DATABASE IF EXISTS {quote_identifier(name)} WITH (FORCE)")
                )
    finally:
        admin.dispose()


@contextmanager
def _scratch_cluster(backup_id: str) -> Iterator[str]:
    """Start an embedded PostgreSQL in a temporary directory; stop and remove it after."""
    from pgwarden.db._ports import free_port
    from pgwarden.db.embedded import EmbeddedServer

    workdir = Path(tempfile.mkdtemp(prefix="pgwarden-verify-"))
    os.chmod(workdir, 0o711)  # noqa: S103 - the server may run as another user: let it in
    server = EmbeddedServer(workdir / "data", port=free_port())
    try:
        server.start()
        with _scratch_database(server.url(), backup_id) as url:
            yield url
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def verify_backup(
    storage: Storage,
    backup_id: str,
    url: str | URL | None = None,
    *,
    scratch: str = "database",
    keyring: BackupKeyring | None = None,
    amcheck: bool = True,
    staging_dir: Path | None = None,
    on_progress: ProgressCallback = no_progress,
) -> VerifyRecord:
    """Restore backup ``backup_id`` into a scratch database, check it, record the result.

    ``url`` names the server of the scratch database (``scratch="database"``); the
    role needs CREATEDB. Raise :class:`IntegrityFailed` (a damaged file, a wrong key, a
    row count or index that differs) or :class:`RestoreFailed` after recording it.
    """
    if scratch not in SCRATCH:
        raise UserError(f"unknown scratch {scratch!r}.", hint="Use database or embedded.")
    if scratch == "database" and url is None:
        raise UserError(
            "verify needs a server to create its scratch database on.",
            hint="Pass --database-url (or set DATABASE_URL), or use --scratch embedded.",
        )
    entry = find_backup(storage, backup_id)
    complete_manifest(entry)
    started = datetime.now(UTC)
    place = (
        _scratch_cluster(backup_id)
        if scratch == "embedded"
        else _scratch_database(url or "", backup_id)
    )
    version: str | None = None
    try:
        with place as target:
            result = restore_backup(
                storage,
                backup_id,
                target,
                jobs=1,  # streamed, never staged, whatever the size
                keyring=keyring,
                precheck=False,
                recount=True,  # read every row back: part of proving the backup
                owners=False,
                privileges=False,
                staging_dir=staging_dir,
                on_progress=on_progress,
            )
            version = _version(target)
            checked = run_amcheck(target) if amcheck else AmcheckResult(False, "not asked for")
    except (IntegrityFailed, RestoreFailed) as exc:
        partial = getattr(exc, "result", None)
        if not isinstance(partial, RestoreResult):
            partial = None
        record = VerifyRecord(
            backup_id=backup_id,
            verified_at=started,
            ok=False,
            scratch=scratch,
            server_version=version,
            restore_seconds=round(partial.seconds, 3) if partial else None,
            row_checks=partial.row_checks if partial else (),
            error=f"{type(exc).__name__}: {exc.message}",
        )
        _record(storage, entry.prefix, record)
        raise
    record = VerifyRecord(
        backup_id=backup_id,
        verified_at=started,
        ok=checked.ok,
        scratch=scratch,
        server_version=version,
        restore_seconds=round(result.seconds, 3),
        row_checks=result.row_checks,
        amcheck=checked,
        error=None if checked.ok else f"amcheck found {len(checked.failures)} bad index(es)",
    )
    _record(storage, entry.prefix, record)
    if not checked.ok:
        names = ", ".join(name for name, _ in checked.failures[:5])
        raise IndexCorrupt(
            f"backup {backup_id} restored, but amcheck finds these indexes inconsistent "
            f"after the restore: {names}.",
            hint="Report it with verify.json; the backup's data may be damaged.",
        )
    return record


def _version(url: str) -> str:
    engine = _pgtools.engine_for(url, application_name="pgwarden-verify")
    try:
        with _pgtools.connect(engine) as conn:
            return _pgtools.server_version(conn)[1]
    finally:
        engine.dispose()


def _record(storage: Storage, prefix: str, record: VerifyRecord) -> None:
    """Write ``verify.json``, unless the backup was removed meanwhile."""
    if storage.exists(prefix + MANIFEST):
        storage.write_bytes(prefix + VERIFY, record.to_json())
