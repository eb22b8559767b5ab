"""``pgwarden vacuum``, ``pgwarden analyze`` and ``pgwarden reindex``.

Each is a thin wrapper of the function of the same name in :mod:`pgwarden.maintain`.
Results go to stdout (a table, or one JSON document with ``--json``); progress goes to
stderr (a progress bar, or JSON lines with ``--json``). Exit codes: 0 when every
statement succeeded, 1 when one failed (the others still ran), 2 for a user error such
as an unknown table, before anything ran.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as ProgressBar
from rich.text import Text

from pgwarden._units import format_size, parse_size
from pgwarden.cli.context import Context, pass_context, plain_console
from pgwarden.cli.render import dump_json, jsonable, table
from pgwarden.maintain import (
    DEFAULT_LOCK_TIMEOUT,
    LockHolder,
    MaintenanceReport,
    Operation,
    Progress,
    Table,
)
from pgwarden.maintain import analyze as analyze_tables
from pgwarden.maintain import reindex as reindex_indexes
from pgwarden.maintain import vacuum as vacuum_tables
from pgwarden.maintain.reindex import BLOCKING_WARNING
from pgwarden.maintain.vacuum import FULL_LOCK_WARNING

__all__ = ["analyze", "reindex", "vacuum"]

F = TypeVar("F", bound=Callable[..., Any])


def _byte_size(ctx: click.Context, param: click.Parameter, value: str) -> int:
    """Return a size such as ``1GB``, ``500MB``, ``64kB`` or ``1024`` in bytes (units of 1024)."""
    try:
        return parse_size(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a size such as 1GB, 500MB, 64kB or 1024."
        ) from None


def _maintenance_options(func: F) -> F:
    """Add ``--dry-run``, ``--lock-timeout`` and ``--statement-timeout``."""
    func = click.option(
        "--statement-timeout", type=click.FloatRange(min=0), default=0.0, metavar="SECONDS",
        help="Cancel a statement running longer than this (default 0: no limit, since "
        "maintenance of a big table legitimately takes long).",
    )(func)  # fmt: skip
    func = click.option(
        "--lock-timeout", type=click.FloatRange(min=0), default=DEFAULT_LOCK_TIMEOUT,
        show_default=True, metavar="SECONDS",
        help="Give up on a table whose lock is not granted in this time (0: wait for ever).",
    )(func)  # fmt: skip
    return click.option(
        "--dry-run", is_flag=True, help="Print the tables and statements; change nothing."
    )(func)


_TABLE_HELP = "Table as name or schema.name, as in SQL (repeatable; default: every user table)."


@click.command()
@click.option("--table", "tables", multiple=True, metavar="NAME", help=_TABLE_HELP)
@click.option("--full", is_flag=True, help="VACUUM FULL: rewrite each table to give space back.")
@click.option("--analyze", is_flag=True, help="Also gather planner statistics.")
@click.option("--freeze", is_flag=True, help="Freeze every row (as after vacuum_freeze_min_age 0).")
@click.option("--auto", is_flag=True, help="Only tables whose dead tuples pass --threshold.")
@click.option(
    "--threshold", type=click.FloatRange(0, 100), default=None, metavar="PCT",
    help="With --auto: dead tuples as a percent of live and dead ones (default 10).",
)  # fmt: skip
@click.option(
    "--min-dead-tuples", type=click.IntRange(min=0), default=1000, show_default=True,
    metavar="N",
    help="With --auto: leave tables with fewer dead tuples alone.",
)  # fmt: skip
@click.option(
    "--max-full-size", callback=_byte_size, default="1GB", show_default=True, metavar="SIZE",
    help="Refuse VACUUM FULL of a larger table (with indexes) unless --force.",
)  # fmt: skip
@click.option("--force", is_flag=True, help="VACUUM FULL even tables over --max-full-size.")
@_maintenance_options
@pass_context
def vacuum(
    state: Context,
    tables: tuple[str, ...],
    full: bool,
    analyze: bool,
    freeze: bool,
    auto: bool,
    threshold: float | None,
    min_dead_tuples: int,
    max_full_size: int,
    force: bool,
    dry_run: bool,
    lock_timeout: float,
    statement_timeout: float,
) -> None:
    """VACUUM tables: the named ones, every user table, or with --auto the bloated ones.

    \b
    Example:
      pgwarden vacuum --auto --threshold 20 --analyze --dry-run
    """
    if threshold is not None and not auto:
        raise click.UsageError("--threshold needs --auto.")
    _caution(state, dry_run, FULL_LOCK_WARNING if full else None)
    _run(
        state,
        vacuum_tables,
        list(tables) or None,
        full=full,
        freeze=freeze,
        analyze=analyze,
        min_dead_pct=(10.0 if threshold is None else threshold) if auto else None,
        min_dead_tuples=min_dead_tuples,
        max_full_size_bytes=max_full_size,
        force=force,
        dry_run=dry_run,
        lock_timeout=lock_timeout,
        statement_timeout=statement_timeout,
    )


@click.command()
@click.option("--table", "tables", multiple=True, metavar="NAME", help=_TABLE_HELP)
@_maintenance_options
@pass_context
def analyze(
    state: Context,
    tables: tuple[str, ...],
    dry_run: bool,
    lock_timeout: float,
    statement_timeout: float,
) -> None:
    """ANALYZE tables, to refresh the statistics the planner chooses plans by.

    \b
    Example:
      pgwarden analyze --table orders --table sales.customers
    """
    _run(
        state,
        analyze_tables,
        list(tables) or None,
        dry_run=dry_run,
        lock_timeout=lock_timeout,
        statement_timeout=statement_timeout,
    )


@click.command()
@click.option(
    "--table", "tables", multiple=True, metavar="NAME",
    help="Rebuild every index of this table (repeatable).",
)  # fmt: skip
@click.option(
    "--index", "indexes", multiple=True, metavar="NAME",
    help="Rebuild this index, as name or schema.name (repeatable).",
)  # fmt: skip
@click.option("--invalid", is_flag=True, help="Rebuild every invalid index.")
@click.option(
    "--concurrently", is_flag=True,
    help="REINDEX CONCURRENTLY (PostgreSQL 12+): reads and writes go on meanwhile.",
)  # fmt: skip
@_maintenance_options
@pass_context
def reindex(
    state: Context,
    tables: tuple[str, ...],
    indexes: tuple[str, ...],
    invalid: bool,
    concurrently: bool,
    dry_run: bool,
    lock_timeout: float,
    statement_timeout: float,
) -> None:
    """REINDEX tables or indexes; without --concurrently it blocks writes meanwhile.

    \b
    Example:
      pgwarden reindex --invalid --concurrently
    """
    if not (tables or indexes or invalid):
        raise click.UsageError("name what to rebuild: --table, --index or --invalid.")
    _caution(state, dry_run, None if concurrently else BLOCKING_WARNING)
    _run(
        state,
        reindex_indexes,
        tables=tables,
        indexes=indexes,
        invalid=invalid,
        concurrently=concurrently,
        dry_run=dry_run,
        lock_timeout=lock_timeout,
        statement_timeout=statement_timeout,
    )


def _run(
    state: Context, operation: Callable[..., MaintenanceReport], *args: Any, **options: Any
) -> None:
    """Connect, run ``operation`` showing its progress, and render its report."""
    with _ProgressView(state.json) as view, state.connect() as conn:
        report = operation(conn, *args, on_progress=view.progress, on_done=view.done, **options)
    _render(state, report)


def _caution(state: Context, dry_run: bool, warning: str | None) -> None:
    """Say what locks a run takes before it takes them (the report repeats it)."""
    if warning and not dry_run and not state.json:
        plain_console(stderr=True, soft_wrap=True).print(_warning(warning))


class _ProgressView:
    """Show progress on stderr: a bar on a terminal, JSON lines with ``--json``.

    Called from the progress thread; rich's progress and click's echo are thread-safe.
    """

    def __init__(self, as_json: bool) -> None:
        self._json = as_json
        self._console = plain_console(stderr=True)
        self._bar = ProgressBar(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[figures]}"),
            TimeElapsedColumn(),
            console=self._console,
            transient=True,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> _ProgressView:
        if not self._json:
            self._bar.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._json:
            self._bar.stop()

    def progress(self, sample: Progress) -> None:
        if self._json:
            click.echo(
                json.dumps({"event": "progress", **jsonable(sample)}, sort_keys=True), err=True
            )
            return
        description = escape(f"{sample.command} {sample.relation}: {sample.phase}")
        # A phase without a measure (total 0) shows a pulsing bar and no figures.
        total = sample.total or None
        figures = f"{sample.done}/{sample.total} {sample.unit}" if total else ""
        if self._task is None:
            self._task = self._bar.add_task(description, total=total, figures=figures)
        self._bar.update(
            self._task, description=description, completed=sample.done, total=total,
            figures=figures,
        )  # fmt: skip

    def done(self, op: Operation) -> None:
        if self._json:
            event = {
                "event": "done",
                "statement": op.statement,
                "status": op.status,
                "seconds": op.seconds,
                "error": op.error,
            }
            click.echo(json.dumps(event, sort_keys=True), err=True)
            return
        if self._task is not None:
            self._bar.remove_task(self._task)
            self._bar.refresh()  # or the next print redraws the bar as it last was
            self._task = None
        if self._console.is_terminal:
            mark = ("ok", "green") if op.status == "ok" else ("failed", "red")
            self._console.print(
                Text.assemble(mark, f" {op.statement} ({op.seconds or 0:.2f} s)"), soft_wrap=True
            )


def _render(state: Context, report: MaintenanceReport) -> None:
    if state.json:
        dump_json(state.console, report)
    else:
        _print_report(state.console, report)
    if not report.ok:
        raise SystemExit(1)


def _print_report(console: Console, report: MaintenanceReport) -> None:
    for warning in report.warnings:
        console.print(_warning(warning), soft_wrap=True)
    if not report.operations:
        below = f" ({report.below_threshold} below the threshold)" if report.below_threshold else ""
        console.print(f"Nothing to {report.command}{below}.")
        return
    # Table cells are plain text (no markup), so names need no escaping there.
    rows = [(op.statement, _shown_size(op), _dead(op), _result(op)) for op in report.operations]
    console.print(table(["statement", "size", "dead tuples", "result"], rows))
    if report.dry_run:
        console.print("Dry run: nothing was run. The statements, in order:")
        for statement in report.statements:
            console.print(f"{statement};", soft_wrap=True)
    for op in report.failed:
        failed = Text.assemble(("failed:", "bold red"), f" {op.statement}: {op.error or ''}")
        console.print(failed, soft_wrap=True)
        for holder in op.blockers:
            console.print(f"  {_holder(holder)}", soft_wrap=True)
        if op.hint:
            console.print(Text.assemble("  ", ("hint:", "bold"), f" {op.hint}"), soft_wrap=True)
    for op in report.operations:
        for warning in op.warnings:
            console.print(_warning(f"{op.statement}: {warning}", "yellow"), soft_wrap=True)
    console.print(_summary(report))


def _warning(warning: str, style: str = "bold yellow") -> Text:
    return Text.assemble(("warning:", style), " ", warning)


def _dead(op: Operation) -> str:
    if not isinstance(op.target, Table):
        return "-" if op.target.valid else "invalid index"
    return f"{op.target.dead_tuples} ({op.target.dead_pct:.1f} %)"


def _shown_size(op: Operation) -> str:
    size = format_size(op.target.size_bytes)
    return size if op.target.size_exact else f"~{size} (locked)"


def _result(op: Operation) -> str:
    if op.status == "planned":
        return "planned"
    return f"{op.status} {op.seconds or 0:.2f} s"


def _holder(holder: LockHolder) -> str:
    parts = [holder.user, holder.application, holder.state]
    if holder.xact_start:
        parts.append(f"transaction since {holder.xact_start:%Y-%m-%d %H:%M:%S %Z}")
    who = ", ".join(part for part in parts if part)
    lock = f"holds {holder.mode}" if holder.mode else "has an older transaction open"
    query = f": {holder.query}" if holder.query else ""
    return f"pid {holder.pid} ({who}) {lock}{query}"


def _summary(report: MaintenanceReport) -> str:
    count = len(report.operations)
    if report.dry_run:
        return f"{count} statement{'s' if count != 1 else ''} planned, nothing run."
    failed = len(report.failed)
    text = f"{report.command}: {count - failed} ok, {failed} failed."
    if report.below_threshold:
        below = report.below_threshold
        text += f" {below} table{'s' if below != 1 else ''} below the threshold left alone."
    return text
