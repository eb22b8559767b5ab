"""``pgwarden migrations``: Alembic migrations, run safely.

Each command is a thin wrapper of the function of the same name in
:mod:`pgwarden.schema`: parse, connect, call, render (a table, or one JSON document with
``--json``). Progress of an upgrade or downgrade goes to stderr, as JSON lines with
``--json``. Exit codes: 0 ok, 1 a failure (or ``check`` found problems), 2 a user error
(no alembic.ini, an unknown revision, a refused downgrade).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.text import Text

from pgwarden.cli.context import Context, pass_context, plain_console
from pgwarden.cli.render import dump_json, jsonable, table

if TYPE_CHECKING:
    from pgwarden.schema import MigrationProgress, MigrationResult

__all__ = ["migrations"]

F = TypeVar("F", bound=Callable[..., Any])


def _alembic_config(func: F) -> F:
    return click.option(
        "-c", "--alembic-config", type=click.Path(path_type=Path, dir_okay=False),
        default=None, metavar="PATH",
        help="Alembic config file (default: PGWARDEN_ALEMBIC_CONFIG, else ./alembic.ini).",
    )(func)  # fmt: skip


def _config_path(state: Context, given: Path | None) -> Path | None:
    return given or state.settings.alembic_config


def _migration_options(func: F) -> F:
    """Add the options upgrade and downgrade share: backup, timeouts, retries, dry run."""
    from pgwarden.schema.migrate import DEFAULT_LOCK_TIMEOUT, DEFAULT_RETRIES

    for decorator in reversed([
        click.option("--backup/--no-backup", default=True, show_default=True,
                     help="Take a logical backup first (into --storage)."),
        click.option("--storage", "storage_url", metavar="URL", default=None,
                     help="Where the backup goes (default: PGWARDEN_BACKUP_STORAGE)."),
        click.option("--lock-timeout", type=click.FloatRange(min=0),
                     default=DEFAULT_LOCK_TIMEOUT, show_default=True, metavar="SECONDS",
                     help="Give up waiting for a lock after this long (then retry); "
                     "meanwhile the application's queries queue behind it."),
        click.option("--statement-timeout", type=click.FloatRange(min=0), default=3600.0,
                     show_default=True, metavar="SECONDS",
                     help="Cancel a statement running longer (0: no limit)."),
        click.option("--retries", type=click.IntRange(min=0), default=DEFAULT_RETRIES,
                     show_default=True, help="Tries again after a lock timeout, with backoff."),
        click.option("--dry-run", is_flag=True,
                     help="Print the SQL (offline mode); change nothing."),
    ]):  # fmt: skip
        func = decorator(func)
    return func


@click.group()
def migrations() -> None:
    """Alembic migrations: status, history, safe upgrade and downgrade, checks.

    \b
    Example:
      pgwarden migrations status -c alembic.ini
    """


@migrations.command()
@_alembic_config
@pass_context
def status(state: Context, alembic_config: Path | None) -> None:
    """Show the revisions the database is at, the heads, and the pending revisions.

    \b
    Example:
      pgwarden migrations status -c alembic.ini
    """
    from pgwarden.schema import status as migration_status

    with state.connect() as conn:
        result = migration_status(conn, config=_config_path(state, alembic_config))
    if state.json:
        dump_json(state.console, result)
        return
    console = state.console
    console.print(Text(f"current: {', '.join(result.current) or 'base (none applied)'}"))
    console.print(Text(f"heads:   {', '.join(result.heads) or 'none'}"))
    if result.up_to_date:
        console.print(Text("up to date", style="green"))
        return
    console.print(
        table(
            ["revision", "message"],
            [
                (rev.revision, rev.message.splitlines()[0] if rev.message else "")
                for rev in result.pending
            ],
            title=f"{len(result.pending)} pending",
        )
    )


@migrations.command()
@_alembic_config
@click.option("--offline", is_flag=True, help="Do not connect: leave out which are applied.")
@pass_context
def history(state: Context, alembic_config: Path | None, offline: bool) -> None:
    """List the revisions, newest first, and which the database has applied.

    \b
    Example:
      pgwarden migrations history -c alembic.ini
    """
    from pgwarden.schema import history as migration_history

    config = _config_path(state, alembic_config)
    if offline:
        revisions = migration_history(config=config)
    else:
        with state.connect() as conn:
            revisions = migration_history(conn, config=config)
    if state.json:
        dump_json(state.console, revisions)
        return
    rows = []
    for rev in revisions:
        applied = "-" if rev.applied is None else "yes" if rev.applied else "no"
        notes = ", ".join(
            note
            for note, on in (("head", rev.is_head), ("no downgrade", not rev.has_downgrade))
            if on
        )
        first = rev.message.splitlines()[0] if rev.message else ""
        rows.append((rev.revision, ", ".join(rev.down_revisions) or "base", applied, notes, first))
    state.console.print(table(["revision", "after", "applied", "", "message"], rows))


@migrations.command()
@click.argument("target", default="heads")
@_alembic_config
@_migration_options
@pass_context
def upgrade(state: Context, /, target: str, alembic_config: Path | None, **options: Any) -> None:
    """Upgrade to TARGET (default: heads): backup first, lock-safe, each revision timed.

    \b
    Example:
      pgwarden migrations upgrade -c alembic.ini --dry-run
    """
    from pgwarden.schema import upgrade as migration_upgrade

    _migrate(state, migration_upgrade, alembic_config, target=target, **options)


# ignore_unknown_options: `-1` is a target, not an option.
@migrations.command(context_settings={"ignore_unknown_options": True})
@click.argument("target")
@_alembic_config
@click.option("--force", is_flag=True, help="Drop tables and columns even if they hold rows.")
@_migration_options
@pass_context
def downgrade(state: Context, /, target: str, alembic_config: Path | None, **options: Any) -> None:
    """Downgrade to TARGET (a revision, -1, or base); refused if it would drop data.

    \b
    Example:
      pgwarden migrations downgrade -1 -c alembic.ini --dry-run
    """
    from pgwarden.schema import downgrade as migration_downgrade

    _migrate(state, migration_downgrade, alembic_config, target=target, **options)


def _migrate(
    state: Context,
    function: Callable[..., MigrationResult],
    alembic_config: Path | None,
    *,
    storage_url: str | None,
    **options: Any,
) -> None:
    from pgwarden.cli._backup_options import keyring, main_storage

    # No storage set is the library's to report, and only when a backup is due.
    chosen = storage_url or state.settings.backup_storage
    needs_storage = options["backup"] and not options["dry_run"] and chosen is not None
    storage = main_storage(state, chosen) if needs_storage else None
    with state.connect() as conn:
        result = function(
            conn,
            config=_config_path(state, alembic_config),
            storage=storage,
            keyring=keyring(state) if needs_storage else None,
            on_progress=_progress_printer(state.json),
            **options,
        )
    _render_result(state, result)


def _progress_printer(as_json: bool) -> Callable[[MigrationProgress], None]:
    err = plain_console(stderr=True, soft_wrap=True)

    def show(event: MigrationProgress) -> None:
        if as_json:
            click.echo(
                json.dumps({"event": "progress", **jsonable(event)}, sort_keys=True), err=True
            )
        elif event.kind == "start" and event.attempt == 1:
            err.print(
                Text(f"{event.revision}: {event.message.splitlines()[0] if event.message else ''}")
            )
        elif event.kind == "retry":
            err.print(
                Text(
                    f"  lock timeout (attempt {event.attempt}); retrying in {event.seconds:.1f}s",
                    style="yellow",
                )
            )
        elif event.kind == "done":
            err.print(Text(f"  done in {event.seconds:.2f}s"))
        elif event.kind == "backup":
            err.print(Text(f"backup: {event.message}"))

    return show


def _revisions(revisions: tuple[str, ...]) -> str:
    return ", ".join(revisions) or "base"


def _render_result(state: Context, result: MigrationResult) -> None:
    if state.json:
        dump_json(state.console, result)
        return
    console = state.console
    if result.dry_run:
        for loss in result.data_losses:
            console.print(
                Text(f"-- would drop {loss.what}, holding {loss.rows} rows", style="yellow")
            )
        console.print(Text(result.sql or "-- nothing to run"))
        return
    if not result.applied:
        console.print(
            Text(f"nothing to {result.direction}: at {', '.join(result.after) or 'base'}")
        )
        return
    console.print(
        table(
            ["revision", "seconds", "attempts", "message"],
            [
                (
                    r.revision,
                    f"{r.seconds:.2f}",
                    r.attempts,
                    r.message.splitlines()[0] if r.message else "",
                )
                for r in result.applied
            ],
            title=f"{result.direction}: {_revisions(result.before)} -> {_revisions(result.after)}",
        )
    )
    if result.backup:
        console.print(Text(f"backup taken first: {result.backup}"))


@migrations.command()
@_alembic_config
@click.option("--models", metavar="MODULE:ATTR", default=None,
              help="The models' MetaData or declarative base "
              "(default: PGWARDEN_MIGRATIONS_MODELS).")  # fmt: skip
@click.option(
    "--no-round-trip", is_flag=True, help="Skip upgrade/downgrade/upgrade of each revision."
)
@pass_context
def check(
    state: Context, alembic_config: Path | None, models: str | None, no_round_trip: bool
) -> None:
    """Check: one head, a downgrade each, round trips, models matching the migrations.

    Works in a scratch database created on the same server and dropped after.

    \b
    Example:
      pgwarden migrations check -c alembic.ini --models learnhub.models:Base
    """
    from pgwarden.schema import check as migration_check

    with state.connect() as conn:
        result = migration_check(
            conn,
            config=_config_path(state, alembic_config),
            models=models or state.settings.migrations_models,
            round_trip=not no_round_trip,
        )
    if state.json:
        dump_json(state.console, result)
    else:
        console = state.console
        for problem in result.problems:
            console.print(Text(f"FAIL {problem.check}: {problem.message}", style="red"))
            if problem.detail:
                console.print(Text(problem.detail))
        for reason in result.skipped:
            console.print(Text(f"skipped {reason}", style="yellow"))
        if result.ok:
            console.print(
                Text(
                    f"ok: {result.revisions} revisions, head {', '.join(result.heads)}",
                    style="green",
                )
            )
    if not result.ok:
        raise click.exceptions.Exit(1)


@migrations.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False), default=".")
@click.option("--location", default="migrations", show_default=True,
              help="Directory of env.py and versions/, under DIRECTORY.")  # fmt: skip
@click.option("--models", metavar="MODULE:ATTR", default=None,
              help="The models autogenerate compares with, written into env.py.")  # fmt: skip
@pass_context
def init(state: Context, directory: Path, location: str, models: str | None) -> None:
    """Write alembic.ini and an async env.py on pgwarden's settings; never overwrite.

    \b
    Example:
      pgwarden migrations init myapp
    """
    from pgwarden.schema import init_environment

    result = init_environment(directory, location=location, models=models)
    if state.json:
        dump_json(state.console, result)
        return
    for path in result.files:
        state.console.print(Text(f"wrote {path}"))


# -- Commands of other modules join the group here (one line each). --
from pgwarden.cli.migrations_lint import lint  # noqa: E402  (joins the group above)

migrations.add_command(lint)
