"""``pgwarden restore`` (and ``restore-db``): a logical backup back into a database.

A thin wrapper of :func:`pgwarden.backup.restore.restore_backup`; exit codes as for
``pgwarden backup`` (see :mod:`pgwarden.cli.backup`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.text import Text
from sqlalchemy.engine import make_url

from pgwarden.backup.restore import backup_contents, restore_backup
from pgwarden.cli._backup_options import keyring, main_storage, storage_option
from pgwarden.cli._backup_view import Bars
from pgwarden.cli.context import Context, pass_context
from pgwarden.cli.pitr import pitr_restore_options, pitr_restore_requested, run_pitr_restore
from pgwarden.cli.render import dump_json

__all__ = ["restore", "restore_db"]


@click.command()
@click.argument("backup_id", metavar="ID", required=False)
@storage_option
@pitr_restore_options
@click.option(
    "--target-url",
    metavar="URL",
    default=None,
    help="Database to restore into (default: --database-url / DATABASE_URL).",
)
@click.option(
    "--table",
    "tables",
    multiple=True,
    metavar="NAME",
    help="Restore only this table, with its indexes, constraints and sequences "
    "(repeatable; name or schema.name, * and ? match).",
)
@click.option("--clean", is_flag=True, help="Drop the backup's objects in the target first.")
@click.option(
    "--list", "show_list", is_flag=True, help="Print the backup's contents; restore nothing."
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    default=None,
    help="Parallel pg_restore workers, no single transaction (default: one per CPU for a "
    "backup of PGWARDEN_BACKUP_PARALLEL_MIN_SIZE, 1GB, or more; else 1).",
)
@click.option(
    "--single-transaction",
    is_flag=True,
    help="Restore in one job and one transaction, whatever the size: all or nothing.",
)
@click.option("--no-owner", is_flag=True, help="Do not set owners (the target lacks the roles).")
@click.option("--no-privileges", is_flag=True, help="Do not restore GRANTs.")
@click.option(
    "--staging-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where to stage files for --jobs or the directory format (default: TMPDIR).",
)
@pass_context
def restore(
    state: Context,
    /,
    backup_id: str | None,
    storage_url: str | None,
    target_url: str | None,
    tables: tuple[str, ...],
    clean: bool,
    show_list: bool,
    jobs: int | None,
    single_transaction: bool,
    no_owner: bool,
    no_privileges: bool,
    staging_dir: Path | None,
    **pitr_options: Any,
) -> None:
    """Restore a backup into a database, checking it first and its row counts after.

    With --target-time, --target-lsn, --target-xid, --target-name or --latest, restore
    the cluster to a moment instead, from a base backup and archived WAL, into a new
    --data-dir (see `pgwarden pitr`).

    \b
    Example:
      pgwarden restore 20261123T101500Z-3f9a --target-url postgresql://localhost/scratch
      pgwarden restore --target-time 2026-12-07T10:15:00+00:00 --data-dir /srv/pg --port 5499
    """
    if pitr_restore_requested(pitr_options):
        run_pitr_restore(state, storage_url, pitr_options)
        return
    if backup_id is None:
        raise click.UsageError("give the ID of a backup, or a --target-... to restore to a moment.")
    storage = main_storage(state, storage_url)
    if show_list:
        lines = backup_contents(storage, backup_id, keyring=keyring(state), staging_dir=staging_dir)
        if state.json:
            dump_json(state.console, {"id": backup_id, "contents": lines})
        else:
            for line in lines:
                click.echo(line)
        return
    target = target_url or state.resolve_url()
    with Bars(as_json=state.json) as bars:
        result = restore_backup(
            storage,
            backup_id,
            target,
            tables=tables,
            clean=clean,
            jobs=jobs,
            single_transaction=single_transaction,
            parallel_min_size=state.settings.backup_parallel_min_size,
            keyring=keyring(state),
            owners=not no_owner,
            privileges=not no_privileges,
            staging_dir=staging_dir,
            on_progress=bars,
        )
    if state.json:
        dump_json(state.console, result)
        return
    database = make_url(result.target).database
    state.console.print(
        Text.assemble(
            "restored backup ",
            (backup_id, "bold"),
            f" into {database} in {result.seconds:.1f} s: "
            f"{len(result.tables)} tables, {len(result.row_checks)} row counts match.",
        )
    )


restore_db = click.Command(
    "restore-db",
    callback=restore.callback,
    params=restore.params,
    help=(
        "Restore a backup (the same as `pgwarden restore`).\n\n"
        "\b\nExample:\n  pgwarden restore-db 20261123T101500Z-3f9a --list"
    ),
)
