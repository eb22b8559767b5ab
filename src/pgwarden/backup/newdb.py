"""Restore a backup into a database created for it on a server.

:func:`restore_to_new_database` creates the database (refusing a name already taken),
restores the backup into it with :func:`~pgwarden.backup.restore.restore_backup`, and
drops it again if the restore fails, so a failed attempt leaves nothing behind. The
source database is never touched: this is how a backup is looked at or recovered from
side by side with the live data.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from pgwarden._sql import quote_identifier
from pgwarden.backup import _pgtools
from pgwarden.backup.crypto import BackupKeyring
from pgwarden.backup.progress import ProgressCallback, no_progress
from pgwarden.backup.restore import RestoreResult, restore_backup
from pgwarden.backup.storage import Storage
from pgwarden.errors import UserError
from pgwarden.urls import parse_database_url

__all__ = ["restore_to_new_database"]

_EXISTS = sa.text("SELECT EXISTS (SELECT FROM pg_database WHERE datname = :name)")


def restore_to_new_database(
    storage: Storage,
    backup_id: str,
    server_url: str | URL,
    database: str,
    *,
    keyring: BackupKeyring | None = None,
    owners: bool = True,
    privileges: bool = True,
    on_progress: ProgressCallback = no_progress,
) -> RestoreResult:
    """Create ``database`` on the server of ``server_url`` and restore ``backup_id`` into it.

    Raise :class:`~pgwarden.errors.UserError` if the name is empty, too long or taken
    (nothing is changed), or the role may not create databases. If the restore fails,
    the new database is dropped and the error raised.
    """
    if not database or len(database.encode()) > 63 or "\x00" in database:
        raise UserError(
            f"{database!r} cannot be a database name: it needs 1 to 63 bytes.",
            hint="Name the new database with at most 63 bytes.",
        )
    base = parse_database_url(server_url)
    admin = _pgtools.engine_for(base, application_name="pgwarden-restore")
    quoted = quote_identifier(database)
    try:
        with _pgtools.connect(admin) as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            if conn.execute(_EXISTS, {"name": database}).scalar_one():
                raise UserError(
                    f"database {database!r} exists already; restore makes a new one.",
                    hint="Choose a name no database has.",
                )
            try:
                conn.execute(sa.text(f"CREATE DATABASE {quoted} TEMPLATE template0"))
            except sa.exc.DBAPIError as exc:
                raise UserError(
                    f"cannot create database {database!r}: "
                    f"{str(exc.orig or exc).strip().splitlines()[0]}",
                    hint="Restore as a role with CREATEDB.",
                ) from None
        target = make_url(base).set(database=database)
        try:
            return restore_backup(
                storage,
                backup_id,
                target,
                keyring=keyring,
                owners=owners,
                privileges=privileges,
                on_progress=on_progress,
            )
        except BaseException:
            with _pgtools.connect(admin) as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
            raise
    finally:
        admin.dispose()
