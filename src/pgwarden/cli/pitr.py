"""``pgwarden pitr ...``: point-in-time recovery: set up archiving, prove it, back up, restore.

Thin wrappers of :mod:`pgwarden.backup.pitr_setup`, :mod:`pgwarden.backup.physical` and
:mod:`pgwarden.backup.pitr`; exit codes as for ``pgwarden backup``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from pgwarden._units import format_size
from pgwarden.backup.physical import create_base_backup
from pgwarden.backup.pitr import restore_pitr
from pgwarden.backup.pitr_drill import run_drill
from pgwarden.backup.pitr_plan import ACTIONS, RecoveryTarget
from pgwarden.backup.pitr_retention import expire_wal
from pgwarden.backup.pitr_setup import archiving_plan, check_archiving
from pgwarden.backup.pitr_status import pitr_status
from pgwarden.backup.restore_points import create_restore_point
from pgwarden.backup.wal import DEFAULT_CLUSTER
from pgwarden.backup.wal.spool import prepare_spool
from pgwarden.cli._backup_options import Duration, keyring, main_storage, storage_option
from pgwarden.cli.context import Context, pass_context
from pgwarden.cli.render import dump_json, jsonable
from pgwarden.cli.wal import cluster_option
from pgwarden.db._serviceuser import service_user
from pgwarden.errors import UserError

__all__ = ["pitr", "pitr_restore_options", "pitr_restore_requested", "run_pitr_restore"]

F = TypeVar("F", bound=Callable[..., Any])


@click.group()
def pitr() -> None:
    """Point-in-time recovery: setup, check, base backups, restore to a moment.

    \b
    Example:
      pgwarden pitr setup --spool /var/lib/pgwarden/spool
    """


@pitr.command()
@click.option(
    "--spool",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Where the archive script and the WAL waiting for upload live.",
)
@click.option("--apply", is_flag=True, help="Change the settings with ALTER SYSTEM.")
@pass_context
def setup(state: Context, spool: Path, apply: bool) -> None:
    """Show (or --apply) the settings WAL archiving needs, and whether to restart.

    \b
    Example:
      pgwarden pitr setup --spool /var/lib/pgwarden/spool --apply
    """
    if apply:
        prepare_spool(spool, owner=service_user())
    with state.connect() as conn:
        plan = archiving_plan(conn, spool=spool, apply=apply)
    if state.json:
        dump_json(state.console, {**jsonable(plan), "statements": plan.statements})
        return
    if not plan.changes:
        click.echo("The server archives WAL as point-in-time recovery needs.")
    for change in plan.changes:
        restart = "  (restart needed)" if change.restart else ""
        click.echo(f"{change.statement};  -- now {change.current!r}{restart}")
    if plan.applied:
        click.echo(
            "Applied."
            + (" Restart the server for them to take effect." if plan.restart_needed else "")
        )
    click.echo(f"Then run the archiver: pgwarden wal archive --spool {spool.absolute()}")


@pitr.command()
@storage_option
@cluster_option
@click.option("--timeout", type=float, default=60, show_default=True, help="Seconds to wait.")
@pass_context
def check(state: Context, storage_url: str | None, cluster: str, timeout: float) -> None:
    """Switch to a new WAL segment and wait until the finished one is in storage.

    \b
    Example:
      pgwarden pitr check --storage /var/backups/pg
    """
    storage = main_storage(state, storage_url)
    with state.connect() as conn:
        result = check_archiving(conn, storage, cluster=cluster, timeout=timeout)
    if state.json:
        dump_json(state.console, jsonable(result))
    else:
        click.echo(f"{result.segment} reached {storage.url} in {result.seconds:.1f} s")


@pitr.command()
@storage_option
@cluster_option
@click.option(
    "--incremental-from", metavar="ID", default=None, help="Incremental (PostgreSQL 17+)."
)
@pass_context
def backup(
    state: Context, storage_url: str | None, cluster: str, incremental_from: str | None
) -> None:
    """Take a physical base backup with pg_basebackup, streamed into storage.

    \b
    Example:
      pgwarden pitr backup --storage /var/backups/pg
    """
    result = create_base_backup(
        state.resolve_url(),
        main_storage(state, storage_url),
        cluster=cluster,
        keyring=keyring(state),
        incremental_from=incremental_from,
    )
    if state.json:
        dump_json(state.console, jsonable(result))
    else:
        click.echo(
            f"base backup {result.id} complete: {format_size(result.size)} stored, "
            f"WAL {result.start_lsn} to {result.stop_lsn} on timeline {result.timeline}"
        )


_TIME_FORMATS = ["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"]
_PITR_DEFAULTS: dict[str, Any] = {
    "target_time": None,
    "target_lsn": None,
    "target_xid": None,
    "target_name": None,
    "latest": False,
    "target_action": "promote",
    "base_backup": None,
    "data_dir": None,
    "port": None,
    "cluster": DEFAULT_CLUSTER,
    "overwrite": False,
    "use_partial": False,
    "timeout": 3600.0,
}


def pitr_restore_options(func: F) -> F:
    """Add the options of a point-in-time restore (to ``restore`` and ``pitr restore``)."""
    options = [
        click.option("--target-time", type=click.DateTime(_TIME_FORMATS), default=None,
                     help="Recover to this moment (with its time zone: ...+00:00)."),
        click.option("--target-lsn", default=None, metavar="LSN", help="Recover to this LSN."),
        click.option("--target-xid", default=None, metavar="XID",
                     help="Recover through this transaction."),
        click.option("--target-name", default=None, metavar="NAME",
                     help="Recover to this restore point (pg_create_restore_point)."),
        click.option("--latest", is_flag=True, help="Recover all archived WAL."),
        click.option("--target-action", type=click.Choice(ACTIONS), default="promote",
                     show_default=True, help="At the target: open (promote) or pause."),
        click.option("--base-backup", default=None, metavar="ID",
                     help="The base backup to start from (default: the newest before the target)."),
        click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                     default=None, help="The new data directory to restore into."),
        click.option("--port", type=click.IntRange(1, 65535), default=None,
                     help="The port the restored server listens on, on 127.0.0.1."),
        cluster_option,
        click.option("--overwrite", is_flag=True, help="Empty a non-empty --data-dir first."),
        click.option("--use-partial", is_flag=True,
                     help="Replay the partial segment `wal stream` archived last, too."),
        click.option("--timeout", type=float, default=3600.0, show_default=True,
                     help="Seconds to wait for the target."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def pitr_restore_requested(options: dict[str, Any]) -> bool:
    """Return whether any point-in-time option differs from its default."""
    return any(options.get(name, default) != default for name, default in _PITR_DEFAULTS.items())


def run_pitr_restore(state: Context, storage_url: str | None, options: dict[str, Any]) -> None:
    """Restore to a moment as the options say, and print where recovery stopped."""
    values = {**_PITR_DEFAULTS, **options}
    if values["data_dir"] is None or values["port"] is None:
        raise UserError(
            "a point-in-time restore needs --data-dir (a new directory) and --port.",
            hint="pgwarden starts the restored server there: it never restores over one.",
        )
    if values["latest"] and any(
        values[n] is not None for n in ("target_time", "target_lsn", "target_xid", "target_name")
    ):
        raise UserError("--latest and another target were given; choose one.")
    target = RecoveryTarget(
        time=values["target_time"],
        lsn=values["target_lsn"],
        xid=values["target_xid"],
        name=values["target_name"],
        action=values["target_action"],
    )
    result = restore_pitr(
        main_storage(state, storage_url),
        values["data_dir"],
        target,
        port=values["port"],
        cluster=values["cluster"],
        backup_id=values["base_backup"],
        keyring=keyring(state),
        overwrite=values["overwrite"],
        use_partial=values["use_partial"],
        timeout=values["timeout"],
    )
    if state.json:
        dump_json(state.console, jsonable(result))
    else:
        click.echo(
            f"restored base backup {result.backup_id} into {result.data_dir} in "
            f"{result.seconds:.1f} s ({result.wal_files} WAL files): {result.reached}"
            + (
                f", last transaction at {result.last_transaction_at}"
                if result.last_transaction_at
                else ""
            )
            + f"; the server runs on 127.0.0.1:{result.port}"
        )


@pitr.command()
@storage_option
@pitr_restore_options
@pass_context
def restore(state: Context, /, storage_url: str | None, **options: Any) -> None:
    """Restore the cluster into a new data directory, to a moment, and start it there.

    \b
    Example:
      pgwarden pitr restore --data-dir /srv/pg2 --port 5499 --target-name before-migration
    """
    run_pitr_restore(state, storage_url, options)


@pitr.command("restore-point")
@click.argument("name")
@storage_option
@cluster_option
@pass_context
def restore_point(state: Context, name: str, storage_url: str | None, cluster: str) -> None:
    """Create a named restore point and record it, for `restore --target-name NAME`.

    \b
    Example:
      pgwarden pitr restore-point before-migration --storage /var/backups/pg
    """
    storage = main_storage(state, storage_url)
    with state.connect() as conn:
        point = create_restore_point(conn, storage, name, cluster=cluster)
    if state.json:
        dump_json(state.console, jsonable(point))
    else:
        click.echo(f"restore point {point.name!r} at {point.lsn} on timeline {point.timeline}")


@pitr.command()
@storage_option
@cluster_option
@pass_context
def status(state: Context, storage_url: str | None, cluster: str) -> None:
    """Show the recoverable window: base backups, archived WAL, gaps, forks, last drill.

    Exits 1 when nothing can be restored (no base backup, or a gap after the oldest).

    \b
    Example:
      pgwarden pitr status --storage /var/backups/pg
    """
    result = pitr_status(main_storage(state, storage_url), cluster=cluster, keyring=keyring(state))
    if state.json:
        dump_json(state.console, {**jsonable(result), "recoverable": result.recoverable})
    else:
        start = f"{result.window_start:%Y-%m-%d %H:%M:%S %Z}" if result.window_start else "-"
        click.echo(
            f"cluster {result.cluster}: {len(result.base_backups)} base backups, "
            f"{result.archived_files} WAL files ({format_size(result.archived_bytes)}); "
            f"recoverable from {start} to the end of {result.newest_segment or '-'}"
        )
        for fork in result.forks:
            click.echo(f"timeline {fork.timeline} forked from {fork.parent} at {fork.lsn}")
        for gap in result.gaps:
            click.echo(
                f"GAP on timeline {gap.timeline}: {gap.first_missing} to {gap.last_missing} missing"
            )
        drill = result.last_drill
        if drill is not None:
            verdict = "passed" if drill.ok else "FAILED"
            click.echo(
                f"last drill {drill.id} {verdict}: restored in {drill.seconds:.1f} s; "
                f"{drill.detail}"
            )
    if not result.recoverable:
        raise click.exceptions.Exit(1)


@pitr.command()
@storage_option
@cluster_option
@click.option(
    "--scratch",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="A directory for the scratch data directory (removed after).",
)
@click.option("--port", type=click.IntRange(1, 65535), required=True, help="The scratch port.")
@pass_context
def drill(state: Context, storage_url: str | None, cluster: str, scratch: Path, port: int) -> None:
    """Restore to a random recent moment into a scratch directory, prove it, record the RTO.

    \b
    Example:
      pgwarden pitr drill --scratch /srv/scratch --port 5498 --storage /var/backups/pg
    """
    record = run_drill(
        state.resolve_url(),
        main_storage(state, storage_url),
        scratch=scratch,
        port=port,
        cluster=cluster,
        keyring=keyring(state),
    )
    if state.json:
        dump_json(state.console, jsonable(record))
    else:
        verdict = "passed" if record.ok else "FAILED"
        click.echo(
            f"drill {record.id} {verdict}: restored to {record.target_time:%Y-%m-%d %H:%M:%S.%f} "
            f"in {record.seconds:.1f} s; {record.detail}"
        )
    if not record.ok:
        raise click.exceptions.Exit(3)


@pitr.command("expire-wal")
@storage_option
@cluster_option
@click.option(
    "--window",
    type=Duration(),
    default=None,
    help="Keep every segment since the oldest base backup this recent (default: since the "
    "oldest); older base backups keep just their own WAL.",
)
@click.option("--dry-run", is_flag=True, help="Show what would go; remove nothing.")
@pass_context
def expire_wal_command(
    state: Context, storage_url: str | None, cluster: str, window: Any, dry_run: bool
) -> None:
    """Remove the archived WAL that no kept base backup needs.

    \b
    Example:
      pgwarden pitr expire-wal --window 7d --dry-run --storage /var/backups/pg
    """
    report = expire_wal(
        main_storage(state, storage_url), cluster=cluster, window=window, dry_run=dry_run
    )
    if state.json:
        dump_json(
            state.console,
            {**jsonable(report), "removed": [item.name for item in report.removed]},
        )
        return
    verb = "would remove" if dry_run else "removed"
    click.echo(
        f"{verb} {len(report.removed)} WAL files ({format_size(report.removed_bytes)}), "
        f"kept {report.kept}; every segment kept since base backup "
        f"{report.continuous_from or '- (there is none: nothing goes)'}"
    )
