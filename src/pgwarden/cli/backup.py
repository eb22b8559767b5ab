"""``pgwarden backup ...`` and ``pgwarden restore``: logical backups with pg_dump.

Each command wraps the library function of the same name in :mod:`pgwarden.backup`.
Exit codes: 0 ok; 1 a failure (pg_dump or pg_restore failed, storage error); 2 a user
error (a bad option, an unknown backup, a non-empty target); 3 an integrity failure (a
checksum, decryption, row count or amcheck that does not match); 4 the storage lock is
held by another backup or expire of the database.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import click
from rich.text import Text

from pgwarden._units import format_size
from pgwarden.backup import catalog
from pgwarden.backup.lock import break_lock
from pgwarden.backup.logical import create_backup
from pgwarden.backup.manifest import storage_name
from pgwarden.backup.retention import RetentionPolicy
from pgwarden.backup.verify import SCRATCH, verify_backup
from pgwarden.cli._backup_options import (
    Duration,
    copy_storage,
    database_name,
    database_option,
    dump_options,
    main_storage,
    storage_option,
)
from pgwarden.cli._backup_options import keyring as keyring_of
from pgwarden.cli._backup_view import (
    Bars,
    entry_summary,
    expire_summary,
    print_entries,
    print_expire,
    print_info,
)
from pgwarden.cli.context import Context, pass_context
from pgwarden.cli.render import dump_json, jsonable

__all__ = ["backup", "backup_db"]


@click.group()
def backup() -> None:
    """Logical backups with pg_dump: create, list, inspect, verify, expire.

    \b
    Example:
      pgwarden backup create --storage /var/backups/pg && pgwarden backup list
    """


@backup.command("create")
@storage_option
@dump_options
@pass_context
def create(
    state: Context,
    storage_url: str | None,
    copy_to: str | None,
    encrypt: bool | None,
    schemas: tuple[str, ...],
    exclude_schemas: tuple[str, ...],
    tables: tuple[str, ...],
    exclude_tables: tuple[str, ...],
    section: str | None,
    dump_format: str,
    jobs: int | None,
    compression: str,
    compression_level: int | None,
    row_counts: str,
    staging_dir: Path | None,
) -> None:
    """Back up the database with pg_dump; the backup is complete once its manifest is written.

    \b
    Example:
      pgwarden backup create --storage s3://acme-backups/pg --exclude-table audit_log
    """
    storage = main_storage(state, storage_url)
    keyring = None if encrypt is False else keyring_of(state, required=bool(encrypt))
    copy = copy_storage(state, copy_to)
    with Bars(as_json=state.json) as bars:
        result = create_backup(
            state.resolve_url(),
            storage,
            schemas=schemas,
            exclude_schemas=exclude_schemas,
            tables=tables,
            exclude_tables=exclude_tables,
            section=section or "all",
            dump_format=dump_format,
            jobs=jobs,
            parallel_min_size=state.settings.backup_parallel_min_size,
            compression=compression,
            compression_level=compression_level,
            keyring=keyring,
            row_counts=row_counts,
            copy_to=copy,
            staging_dir=staging_dir,
            on_progress=bars,
        )
    if state.json:
        dump_json(state.console, {**jsonable(result), "manifest": result.manifest.to_dict()})
        return
    manifest = result.manifest
    encrypted = f", encrypted with key {manifest.key_id}" if manifest.key_id else ""
    state.console.print(
        Text.assemble(
            "backup ",
            (manifest.id, "bold"),
            f" of {manifest.database} complete: "
            f"{format_size(manifest.size)} in {manifest.duration_seconds:.1f} s, "
            f"{len(manifest.tables)} tables{encrypted}; "
            f"in {result.storage.rstrip('/')}/{result.prefix}",
        )
    )
    if result.copied_to:
        state.console.print(f"copied to {result.copied_to}")


@backup.command("list")
@storage_option
@click.option("--database", metavar="NAME", default=None, help="Only this database's backups.")
@pass_context
def list_command(state: Context, storage_url: str | None, database: str | None) -> None:
    """List backups, complete and incomplete, newest first.

    \b
    Example:
      pgwarden --json backup list --database learnhub
    """
    entries = catalog.list_backups(main_storage(state, storage_url), database=database)
    if state.json:
        dump_json(state.console, [entry_summary(e) for e in entries])
    else:
        print_entries(state.console, entries)


@backup.command()
@click.argument("backup_id", metavar="ID")
@storage_option
@pass_context
def info(state: Context, backup_id: str, storage_url: str | None) -> None:
    """Show a backup's manifest (a logical backup's or a base backup's), its verification.

    \b
    Example:
      pgwarden backup info 20261123T101500Z-3f9a
    """
    entry = catalog.backup_info(main_storage(state, storage_url), backup_id)
    if state.json:
        dump_json(
            state.console,
            {
                **entry_summary(entry),
                "manifest": entry.manifest.to_dict() if entry.manifest else None,
                "base_backup": jsonable(entry.base_backup) if entry.base_backup else None,
                "verification": entry.verification,
            },
        )
    else:
        print_info(state.console, entry)


@backup.command()
@click.argument("backup_id", metavar="ID")
@storage_option
@click.option(
    "--scratch",
    type=click.Choice(SCRATCH),
    default="database",
    show_default=True,
    help="Restore into a scratch database on the server of --database-url, or into "
    "a temporary embedded PostgreSQL.",
)
@click.option("--no-amcheck", is_flag=True, help="Skip the B-tree index checks.")
@pass_context
def verify(
    state: Context, backup_id: str, storage_url: str | None, scratch: str, no_amcheck: bool
) -> None:
    """Restore a backup into a scratch database, check row counts and indexes, record it.

    \b
    Example:
      pgwarden backup verify 20261123T101500Z-3f9a --scratch embedded
    """
    storage = main_storage(state, storage_url)
    url = state.resolve_url() if scratch == "database" else None
    with Bars(as_json=state.json) as bars:
        record = verify_backup(
            storage,
            backup_id,
            url,
            scratch=scratch,
            keyring=keyring_of(state),
            amcheck=not no_amcheck,
            on_progress=bars,
        )
    if state.json:
        dump_json(state.console, record)
        return
    checked = len(record.row_checks)
    amcheck = record.amcheck
    indexes = (
        f", {amcheck.indexes_checked} indexes amchecked" if amcheck and amcheck.available else ""
    )
    state.console.print(
        Text.assemble(
            "backup ",
            (backup_id, "bold"),
            f" verified: restored in {record.restore_seconds:.1f} s "
            f"({record.scratch}), {checked} tables' rows match{indexes}.",
        )
    )


@backup.command()
@storage_option
@database_option
@click.option(
    "--keep-daily",
    type=click.IntRange(0),
    default=7,
    show_default=True,
    help="Newest of the last N days with a backup.",
)
@click.option(
    "--keep-weekly",
    type=click.IntRange(0),
    default=4,
    show_default=True,
    help="Newest of the last N ISO weeks with one.",
)
@click.option(
    "--keep-monthly",
    type=click.IntRange(0),
    default=12,
    show_default=True,
    help="Newest of the last N months with one.",
)
@click.option(
    "--keep-yearly",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Newest of the last N years with one.",
)
@click.option(
    "--min-count",
    type=click.IntRange(0),
    default=3,
    show_default=True,
    help="Always keep the N newest complete backups.",
)
@click.option(
    "--incomplete-grace",
    type=Duration(),
    default="24h",
    show_default=True,
    help="Keep incomplete backups younger than this (they may be running).",
)
@click.option(
    "--dry-run", is_flag=True, help="Print what would be removed and why; remove nothing."
)
@pass_context
def expire(
    state: Context,
    storage_url: str | None,
    database: str | None,
    keep_daily: int,
    keep_weekly: int,
    keep_monthly: int,
    keep_yearly: int,
    min_count: int,
    incomplete_grace: timedelta,
    dry_run: bool,
) -> None:
    """Remove the backups the retention policy does not keep (pinned ones are kept).

    \b
    Example:
      pgwarden backup expire --keep-daily 7 --keep-weekly 4 --dry-run
    """
    policy = RetentionPolicy(
        daily=keep_daily,
        weekly=keep_weekly,
        monthly=keep_monthly,
        yearly=keep_yearly,
        min_count=min_count,
        incomplete_grace=incomplete_grace,
    )
    report = catalog.expire_backups(
        main_storage(state, storage_url),
        database_name(state, database),
        policy=policy,
        dry_run=dry_run,
    )
    if state.json:
        dump_json(state.console, expire_summary(report))
    else:
        print_expire(state.console, report)


@backup.command()
@click.argument("backup_id", metavar="ID")
@storage_option
@click.option("--force", is_flag=True, help="Delete even the newest complete or a pinned backup.")
@click.option("--dry-run", is_flag=True, help="Print the objects that would go; delete nothing.")
@pass_context
def delete(
    state: Context, backup_id: str, storage_url: str | None, force: bool, dry_run: bool
) -> None:
    """Delete one backup.

    \b
    Example:
      pgwarden backup delete 20261123T101500Z-3f9a --dry-run
    """
    report = catalog.delete_backup(
        main_storage(state, storage_url), backup_id, force=force, dry_run=dry_run
    )
    if state.json:
        dump_json(state.console, {"id": backup_id, "dry_run": dry_run, "keys": report.keys})
        return
    verb = "would delete" if dry_run else "deleted"
    state.console.print(f"{verb} backup {backup_id} ({len(report.keys)} objects).")


@backup.command()
@click.argument("backup_id", metavar="ID")
@storage_option
@click.option("--reason", default=None, help="Why it is kept (recorded in the pin).")
@pass_context
def pin(state: Context, backup_id: str, storage_url: str | None, reason: str | None) -> None:
    """Pin a backup: expire keeps it until it is unpinned.

    \b
    Example:
      pgwarden backup pin 20261123T101500Z-3f9a --reason "before the 3.0 migration"
    """
    entry = catalog.pin_backup(main_storage(state, storage_url), backup_id, reason=reason)
    _say(state, entry, "pinned")


@backup.command()
@click.argument("backup_id", metavar="ID")
@storage_option
@pass_context
def unpin(state: Context, backup_id: str, storage_url: str | None) -> None:
    """Unpin a backup, leaving it to the retention policy.

    \b
    Example:
      pgwarden backup unpin 20261123T101500Z-3f9a
    """
    entry = catalog.unpin_backup(main_storage(state, storage_url), backup_id)
    _say(state, entry, "unpinned")


def _say(state: Context, entry: catalog.BackupEntry, what: str) -> None:
    if state.json:
        dump_json(state.console, entry_summary(entry))
    else:
        state.console.print(f"backup {entry.id} {what}.")


@backup.command()
@click.argument("name", required=False)
@storage_option
@pass_context
def unlock(state: Context, name: str | None, storage_url: str | None) -> None:
    """Remove a database's backup lock whoever holds it, once its holder is surely gone.

    NAME is the lock's name, the database's (default: the database URL's).

    \b
    Example:
      pgwarden backup unlock learnhub
    """
    lock = storage_name(database_name(state, name))
    record = break_lock(main_storage(state, storage_url), lock)
    if state.json:
        dump_json(state.console, {"lock": lock, "removed": jsonable(record)})
    elif record is None:
        state.console.print(f"the lock {lock!r} was not held.")
    else:
        state.console.print(f"removed the lock {lock!r}: {record.describe()}.")


backup_db = click.Command(
    "backup-db",
    callback=create.callback,
    params=create.params,
    help=(
        "Back up the database (the same as `pgwarden backup create`).\n\n"
        "\b\nExample:\n  pgwarden backup-db --storage /var/backups/pg"
    ),
)
