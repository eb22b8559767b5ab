"""``pgwarden wal ...``: archive WAL files into backup storage and fetch them back.

Thin wrappers of :mod:`pgwarden.backup.wal`. ``push`` and ``fetch`` serve as
archive_command and restore_command where the server's user can run pgwarden;
``archive`` is the long-lived archiver behind the spool's scripts (`pgwarden pitr setup`).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from pgwarden._units import format_size
from pgwarden.backup.wal import DEFAULT_CLUSTER, fetch_wal, list_wal, push_wal, run_archiver
from pgwarden.backup.wal.stream import DEFAULT_SLOT, stream_wal
from pgwarden.cli._backup_options import keyring, main_storage, storage_option
from pgwarden.cli.context import Context, pass_context
from pgwarden.cli.render import dump_json, jsonable

__all__ = ["wal"]

cluster_option = click.option(
    "--cluster",
    metavar="NAME",
    default=DEFAULT_CLUSTER,
    show_default=True,
    help="The archive's name in the storage: one per PostgreSQL cluster.",
)


@click.group()
def wal() -> None:
    """WAL archiving for point-in-time recovery: push, fetch, archive, stream, list.

    \b
    Example:
      pgwarden wal list --storage /var/backups/pg
    """


def _stop_on_signals() -> threading.Event:
    """Return an event that SIGTERM and SIGINT set: a long-running command ends cleanly."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


@wal.command("push")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="The WAL file's name (default: PATH's file name).")
@storage_option
@cluster_option
@pass_context
def push(
    state: Context, path: Path, name: str | None, storage_url: str | None, cluster: str
) -> None:
    """Archive one WAL file (archive_command = 'pgwarden wal push %p').

    The same file twice succeeds; a different file under an archived name is refused.

    \b
    Example:
      pgwarden wal push pg_wal/000000010000000000000003 --storage /var/backups/pg
    """
    result = push_wal(
        main_storage(state, storage_url),
        path,
        name=name,
        cluster=cluster,
        keyring=keyring(state),
    )
    if state.json:
        dump_json(state.console, jsonable(result))
    elif not result.already_archived:
        state.console.print(
            f"archived {result.name}: {format_size(result.size)} as "
            f"{format_size(result.stored_size)}"
        )


@wal.command("fetch")
@click.argument("name")
@click.argument("destination", type=click.Path(dir_okay=False, path_type=Path))
@storage_option
@cluster_option
@click.option(
    "--partial",
    is_flag=True,
    help="Serve a segment the archive lacks from its archived partial copy (wal stream).",
)
@pass_context
def fetch(
    state: Context,
    name: str,
    destination: Path,
    storage_url: str | None,
    cluster: str,
    partial: bool,
) -> None:
    """Fetch one archived WAL file, checked (restore_command = 'pgwarden wal fetch %f %p').

    Exits 2 when the archive lacks it, 3 when it is damaged: PostgreSQL replays neither.
    With --partial, recovery to the latest moment replays the partial segment that
    `pgwarden wal stream` archived last.

    \b
    Example:
      pgwarden wal fetch 000000010000000000000003 /tmp/seg --storage /var/backups/pg
    """
    fetch_wal(
        main_storage(state, storage_url),
        name,
        destination,
        cluster=cluster,
        keyring=keyring(state),
        partial=partial,
    )


@wal.command("stream")
@click.option(
    "--directory",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="pg_receivewal's directory: the segment being received, kept between runs.",
)
@click.option("--slot", default=DEFAULT_SLOT, show_default=True, help="The replication slot.")
@click.option(
    "--create-slot/--no-create-slot",
    default=True,
    show_default=True,
    help="Create the physical slot if it is absent.",
)
@click.option(
    "--partial-every",
    type=click.FloatRange(0),
    default=30.0,
    show_default=True,
    help="Seconds between copies of the partial segment into storage (0: only at stop).",
)
@storage_option
@cluster_option
@pass_context
def stream(
    state: Context,
    directory: Path,
    slot: str,
    create_slot: bool,
    partial_every: float,
    storage_url: str | None,
    cluster: str,
) -> None:
    """Stream WAL with pg_receivewal on a replication slot into storage, until stopped.

    Each completed segment is archived as `wal push` archives it; pg_receivewal is
    restarted with backoff when it dies; SIGTERM stops it cleanly.

    \b
    Example:
      pgwarden wal stream --directory /var/lib/pgwarden/stream --storage /var/backups/pg
    """
    stop = _stop_on_signals()
    stats = stream_wal(
        state.resolve_url(),
        main_storage(state, storage_url),
        directory,
        slot=slot,
        create_slot=create_slot,
        cluster=cluster,
        keyring=keyring(state),
        stop=stop,
        partial_every=partial_every,
    )
    if state.json:
        dump_json(state.console, jsonable(stats))
    else:
        state.console.print(
            f"streamed {stats.pushed} WAL files ({format_size(stats.bytes)}), "
            f"{stats.already} archived already, {stats.partials} partial copies, "
            f"{stats.restarts} restarts"
        )


@wal.command("archive")
@click.option(
    "--spool",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The spool `pgwarden pitr setup` made (its archive-wal script is archive_command).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The server's data directory: push segments as soon as they are ready.",
)
@click.option("--workers", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--once", is_flag=True, help="Push what is waiting, then exit.")
@storage_option
@cluster_option
@pass_context
def archive(
    state: Context,
    spool: Path,
    data_dir: Path | None,
    workers: int,
    once: bool,
    storage_url: str | None,
    cluster: str,
) -> None:
    """Run the archiver: push the spool's WAL files into storage until stopped.

    \b
    Example:
      pgwarden wal archive --spool /var/lib/pgwarden/spool --once --storage /var/backups/pg
    """
    stop = _stop_on_signals()
    stats = run_archiver(
        main_storage(state, storage_url),
        spool,
        cluster=cluster,
        keyring=keyring(state),
        data_dir=data_dir,
        workers=workers,
        stop=stop,
        once=once,
    )
    if state.json:
        dump_json(state.console, jsonable(stats))
    else:
        state.console.print(
            f"pushed {stats.pushed} WAL files ({format_size(stats.bytes)}), "
            f"{stats.already} archived already, {stats.failed} failed"
        )


@wal.command("list")
@storage_option
@cluster_option
@pass_context
def list_command(state: Context, storage_url: str | None, cluster: str) -> None:
    """List the archived WAL files, oldest first.

    \b
    Example:
      pgwarden --json wal list --storage /var/backups/pg
    """
    items = list_wal(main_storage(state, storage_url), cluster=cluster)
    if state.json:
        dump_json(
            state.console,
            [{"name": i.name, "size": i.size, "encrypted": i.encrypted} for i in items],
        )
        return
    for item in items:
        click.echo(
            f"{item.name}  {format_size(item.size)}{'  encrypted' if item.encrypted else ''}"
        )
