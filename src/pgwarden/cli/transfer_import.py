"""``pgwarden import``, ``import runs|rollback|purge``, ``import-csv`` and ``erase-user``.

Thin wrappers of :mod:`pgwarden.transfer` (importer, journal, rollback, erase). Results
go to stdout (tables, or one JSON document with ``--json``); progress to stderr (bars
with rows/s and an ETA on a terminal, JSON lines with ``--json``). Exit codes: 0 ok;
1 when rows conflict or are refused (a dry run that would fail too) or a rollback is
refused; 2 for a user error (a missing table, a schema mismatch, a bad bundle), before
anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

import click
from sqlalchemy.engine import Connection

from pgwarden.cli import _import_view as view
from pgwarden.cli._errors import option_values
from pgwarden.cli.context import Context, pass_context
from pgwarden.cli.render import dump_json
from pgwarden.errors import UserError
from pgwarden.transfer import (
    ImportFailed,
    ImportReport,
    RollbackRefused,
    TransformSpec,
    erase_user,
    import_bundle,
    import_csv,
    list_runs,
    load_transforms,
    purge_run,
    rollback_run,
)
from pgwarden.transfer.load.importer import MODES, Mode

__all__ = ["erase_user_command", "import_csv_command", "import_group"]

F = TypeVar("F", bound=Callable[..., Any])


class _ImportGroup(click.Group):
    """``pgwarden import BUNDLE_DIR ...`` is short for ``pgwarden import bundle BUNDLE_DIR ...``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["bundle", *args]
        return super().parse_args(ctx, args)


def _write_options(func: F) -> F:
    """Add the options every import shares."""
    for option in reversed(
        [
            click.option("--mode", type=click.Choice(MODES), default="insert", show_default=True,
                         help="insert: add rows, fail on an existing key; upsert: add or update;"
                         " replace: upsert, and delete the rows the source lacks."),
            click.option("--conflict-key", "conflict_keys", multiple=True,
                         metavar="[TABLE:]NAME",
                         help="Match rows on this unique constraint or index instead of the"
                         " primary key (repeatable)."),
            click.option("--dry-run", is_flag=True,
                         help="Do it all in a transaction, report what would change, roll back."),
            click.option("--transforms", "transforms_file", metavar="FILE",
                         type=click.Path(dir_okay=False, exists=True, path_type=Path),
                         help="Rename, convert and anonymize columns on the way in."),
            click.option("--salt-env", metavar="VAR",
                         help="Environment variable holding the transforms' salt."),
            click.option("--batch-size", type=click.IntRange(min=1), default=20_000,
                         show_default=True, metavar="ROWS", help="Rows per merge statement."),
            click.option("--max-errors", type=click.IntRange(min=1), default=10,
                         show_default=True, metavar="N",
                         help="Refused rows to locate and list per table."),
            click.option("--fire-triggers", is_flag=True,
                         help="Keep user triggers on (their effects are not rolled back)."),
        ]
    ):  # fmt: skip
        func = option(func)
    return func


@contextmanager
def _connection(state: Context) -> Iterator[Connection]:
    with state.connect() as conn:
        yield conn


def _transforms(file: Path | None, salt_env: str | None) -> TransformSpec | None:
    return load_transforms(file, salt_env=salt_env) if file is not None else None


def _conflict_keys(values: tuple[str, ...]) -> dict[str, str]:
    keys = {}
    for value in values:
        table, colon, name = value.rpartition(":")
        if colon and "." not in table:
            table = f"public.{table}"
        keys[table if colon else "*"] = name
    return keys


def _finish(state: Context, report: ImportReport, failed: ImportFailed | None = None) -> None:
    if state.json:
        dump_json(state.console, report)
    else:
        view.print_import(state.console, report)
    if failed is not None and not state.json:
        raise failed
    if not report.ok:
        raise SystemExit(1)


@click.group("import", cls=_ImportGroup, no_args_is_help=True)
def import_group() -> None:
    """Import a bundle; list, roll back and purge recorded imports and erases.

    `pgwarden import BUNDLE_DIR` is short for `pgwarden import bundle BUNDLE_DIR`.

    \b
    Example:
      pgwarden import out/ --mode upsert --dry-run
    """


@import_group.command("bundle")
@click.argument("bundle_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@_write_options
@click.option(
    "--allow-schema-drift",
    is_flag=True,
    help="Import when the bundle's columns are a subset of the target's.",
)
@click.option(
    "--allow-table",
    "allow_tables",
    multiple=True,
    metavar="TABLE",
    help="Refuse the bundle unless each of its tables is one of these (repeatable; default:"
    " any table outside pgwarden's and the system's schemas).",
)
@pass_context
def import_bundle_command(
    state: Context,
    bundle_dir: Path,
    mode: str,
    conflict_keys: tuple[str, ...],
    dry_run: bool,
    transforms_file: Path | None,
    salt_env: str | None,
    batch_size: int,
    max_errors: int,
    fire_triggers: bool,
    allow_schema_drift: bool,
    allow_tables: tuple[str, ...],
) -> None:
    """Import a bundle written by `pgwarden export`, journaled as a run.

    The bundle is untrusted input: its manifest, its files (plain files, no links),
    its tables (never pgwarden's own) and every line are checked, and a bad one stops
    the import before anything is written.

    \b
    Example:
      pgwarden import bundle out/ --mode replace --dry-run --allow-table tags
    """
    spec = _transforms(transforms_file, salt_env)
    with view.ImportProgressView(state.json) as progress, _connection(state) as conn:
        try:
            report = import_bundle(
                conn, bundle_dir, mode=cast(Mode, mode),
                conflict_keys=_conflict_keys(conflict_keys),
                dry_run=dry_run, allow_schema_drift=allow_schema_drift,
                allow_tables=allow_tables or None, transforms=spec,
                batch_size=batch_size, max_errors=max_errors, fire_triggers=fire_triggers,
                on_progress=progress.progress,
            )  # fmt: skip
        except ImportFailed as failed:
            _finish(state, failed.report, failed)
            return
    _finish(state, report)


@import_group.command("runs")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="Show this many runs, newest first.")  # fmt: skip
@pass_context
def runs(state: Context, limit: int) -> None:
    """List the recorded imports and erases, newest first.

    \b
    Example:
      pgwarden import runs --limit 5
    """
    with _connection(state) as conn:
        found = list_runs(conn, limit=limit)
    if state.json:
        dump_json(state.console, {"runs": found})
    else:
        view.print_runs(state.console, found)


@import_group.command("rollback")
@click.argument("run_id", metavar="RUN", type=int)
@click.option("--dry-run", is_flag=True, help="Check and rehearse the rollback; change nothing.")
@pass_context
def rollback(state: Context, run_id: int, dry_run: bool) -> None:
    """Restore the rows an import or erase changed, refusing if they changed since.

    \b
    Example:
      pgwarden import rollback 7 --dry-run
    """
    with _connection(state) as conn:
        try:
            report = rollback_run(conn, run_id, dry_run=dry_run)
        except RollbackRefused as refused:
            _refused(state, refused)
    if state.json:
        dump_json(state.console, report)
    else:
        view.print_rollback(state.console, report)


def _refused(state: Context, refused: RollbackRefused) -> NoReturn:
    if state.json:
        error = {"type": "RollbackRefused", "message": refused.message, "hint": refused.hint}
        dump_json(
            state.console,
            {"error": error, "changed": refused.changed, "total": refused.total},
        )
        raise SystemExit(1)
    view.print_refusal(state.console, refused)
    raise refused


@import_group.command("purge")
@click.argument("run_id", metavar="RUN", type=int)
@pass_context
def purge(state: Context, run_id: int) -> None:
    """Delete a run's journal (an erase's copy of the erased rows); it can no longer be undone.

    \b
    Example:
      pgwarden import purge 7
    """
    with _connection(state) as conn, conn.begin():
        rows = purge_run(conn, run_id)
    if state.json:
        dump_json(state.console, {"run": run_id, "journal_rows_deleted": rows})
    else:
        state.console.print(f"Purged {rows} journal row(s) of run {run_id}.")


@click.command("import-csv")
@click.argument("table_name", metavar="TABLE")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@_write_options
@pass_context
def import_csv_command(
    state: Context,
    table_name: str,
    file: Path,
    mode: str,
    conflict_keys: tuple[str, ...],
    dry_run: bool,
    transforms_file: Path | None,
    salt_env: str | None,
    batch_size: int,
    max_errors: int,
    fire_triggers: bool,
) -> None:
    """Import a CSV file with a header line into TABLE, journaled as a run.

    An unquoted empty field is NULL.

    \b
    Example:
      pgwarden import-csv public.tags tags.csv --mode upsert --conflict-key uq_tags_name
    """
    if len(conflict_keys) > 1:
        raise click.UsageError("import-csv takes one --conflict-key.")
    key = conflict_keys[0].rpartition(":")[2] if conflict_keys else None
    spec = _transforms(transforms_file, salt_env)
    with view.ImportProgressView(state.json) as progress, _connection(state) as conn:
        try:
            report = import_csv(
                conn, table_name, file, mode=cast(Mode, mode), conflict_key=key, dry_run=dry_run,
                transforms=spec, batch_size=batch_size, max_errors=max_errors,
                fire_triggers=fire_triggers, on_progress=progress.progress,
            )  # fmt: skip
        except ImportFailed as failed:
            _finish(state, failed.report, failed)
            return
    _finish(state, report)


@click.command("erase-user")
@click.option(
    "--user-table",
    default="public.users",
    show_default=True,
    metavar="TABLE",
    help="The table of users (a one-column primary key).",
)
@click.option("--user-id", required=True, metavar="ID", help="The user's primary key value.")
@click.option(
    "--anonymize",
    is_flag=True,
    help="Replace personal values in place with deterministic fakes; delete nothing.",
)
@click.option(
    "--also",
    multiple=True,
    metavar="TABLE.COLUMN",
    help="Also erase rows whose COLUMN holds the user's id without a foreign key (repeatable).",
)
@click.option(
    "--keep",
    multiple=True,
    metavar="TABLE.COLUMN",
    help="With --anonymize, leave this column's values as they are (repeatable).",
)
@click.option(
    "--clear",
    multiple=True,
    metavar="TABLE.COLUMN",
    help="With --anonymize, set this column to NULL instead of a fake (repeatable).",
)
@click.option(
    "--salt-env",
    metavar="VAR",
    default="PGWARDEN_TRANSFER_SALT",
    show_default=True,
    help="Environment variable holding the salt the fakes derive from.",
)
@click.option(
    "--purge-journal",
    is_flag=True,
    help="Keep no copy of the erased values (the erase cannot be rolled back).",
)
@click.option("--dry-run", is_flag=True, help="Report per table what would change; change nothing.")
@pass_context  # fmt: skip
def erase_user_command(
    state: Context,
    user_table: str,
    user_id: str,
    anonymize: bool,
    also: tuple[str, ...],
    keep: tuple[str, ...],
    clear: tuple[str, ...],
    salt_env: str,
    purge_journal: bool,
    dry_run: bool,
) -> None:
    """Delete (or anonymize) one user's row and every row linked to it, as a journaled run.

    \b
    Example:
      pgwarden erase-user --user-table public.users --user-id 42 --dry-run
    """
    if (keep or clear) and not anonymize:
        raise UserError("--keep and --clear choose what --anonymize writes; add --anonymize.")
    salt = os.environ.get(salt_env, "")
    with _connection(state) as conn, option_values({"--user-id": user_id}):
        report = erase_user(
            conn, user_table, user_id, anonymize=anonymize, dry_run=dry_run, also=also,
            salt=salt, purge_journal=purge_journal, keep=keep, clear=clear,
        )  # fmt: skip
    if state.json:
        dump_json(state.console, report)
    else:
        view.print_erase(state.console, report)
