"""``pgwarden export`` and ``pgwarden export-csv``: thin wrappers of :mod:`pgwarden.transfer`.

Results go to stdout (a table, or one JSON document with ``--json``); progress goes to
stderr (a bar with rows/s and an ETA on a terminal, JSON lines with ``--json``). A bad
filter, table or transform is a user error (exit 2), reported before any row is read.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal, cast

import click
from rich.text import Text

from pgwarden._units import format_size
from pgwarden.cli._errors import option_values
from pgwarden.cli.context import Context, pass_context
from pgwarden.cli.render import RowProgressView, dump_json, table
from pgwarden.transfer import (
    ExportResult,
    TransferProgress,
    TransformSpec,
    export_bundle,
    export_personal_data,
    export_table,
    load_transforms,
)
from pgwarden.transfer.bundle import Format
from pgwarden.transfer.export.bundles import entity_table
from pgwarden.transfer.export.csvio import FileFormat

__all__ = ["export", "export_csv"]


class _Children(click.ParamType):  # type: ignore[type-arg]
    name = "N|all"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or isinstance(value, int):
            return value
        if str(value).lower() == "all":
            return -1
        try:
            number = int(value)
        except ValueError:
            self.fail(f"{value!r} is neither a number nor 'all'.", param, ctx)
        if number < 0:
            self.fail("give 0 or more levels, or 'all'.", param, ctx)
        return number


def _filter_options(func: Any) -> Any:
    for option in reversed(
        [
            click.option("--where", "where", multiple=True, metavar="EXPR",
                         help="Keep rows matching EXPR (e.g. \"status = 'published'\"); "
                         "prefix 'table:' to filter one table. Repeatable."),
            click.option("--date-column", metavar="COLUMN",
                         help="Column --since and --until bound."),
            click.option("--since", metavar="WHEN", help="Keep rows with COLUMN >= WHEN."),
            click.option("--until", metavar="WHEN", help="Keep rows with COLUMN < WHEN."),
            click.option("--transforms", "transforms_file", metavar="FILE",
                         type=click.Path(dir_okay=False, exists=True, path_type=Path),
                         help="Rename, convert and anonymize columns (.toml, .yaml, .py)."),
            click.option("--salt-env", metavar="VAR",
                         help="Environment variable holding the anonymization salt "
                         "(default: the file's salt_env, else PGWARDEN_TRANSFER_SALT)."),
        ]
    ):  # fmt: skip
        func = option(func)
    return func


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--table",
    "tables",
    multiple=True,
    metavar="SCHEMA.NAME",
    help="Export this table's rows (default: every table). Repeatable.",
)
@click.option(
    "--entity",
    "entities",
    multiple=True,
    metavar="MODULE:CLASS",
    help="Export the table an ORM entity is mapped to. Repeatable.",
)
@_filter_options
@click.option(
    "--children",
    type=_Children(),
    default=None,
    help="Levels of referencing rows to add, or 'all' [default: 0; all with --user-id].",
)
@click.option(
    "--nullable-parents",
    type=click.Choice(["include", "null"]),
    default="include",
    show_default=True,
    help="For keys that may be NULL: bring the parent row, or write NULL when the parent "
    "is not exported anyway.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["copy", "jsonl"]),
    default="copy",
    show_default=True,
    help="Data file format.",
)
@click.option(
    "--user-table",
    metavar="SCHEMA.NAME",
    default="public.users",
    show_default=True,
    help="Table of users, for --user-id.",
)
@click.option(
    "--user-id",
    "--personal-data",
    "user_id",
    metavar="ID",
    help="Export everything linked to this user instead (personal data export).",
)
@pass_context
def export(
    state: Context,
    out_dir: Path,
    tables: tuple[str, ...],
    entities: tuple[str, ...],
    where: tuple[str, ...],
    date_column: str | None,
    since: str | None,
    until: str | None,
    transforms_file: Path | None,
    salt_env: str | None,
    children: int | None,
    nullable_parents: str,
    fmt: str,
    user_table: str,
    user_id: str | None,
) -> None:
    """Export rows, and every row they need, to a bundle directory that loads anywhere.

    Parents of the chosen rows come along (foreign keys followed to the top), and with
    --children N the rows that reference them, N levels deep. One snapshot throughout.

    \b
    Examples:
      pgwarden export out/ --table public.users --date-column created_at \\
          --since 2026-01-01 --until 2026-02-01 --children 2 --transforms anonymize.toml
      pgwarden export me/ --user-id 42
    """
    names = list(tables) + [entity_table(spec) for spec in entities]
    spec = _transforms(transforms_file, salt_env)
    depth = None if children == -1 else children  # None: every level
    given = {"--user-id": user_id, "--since": since, "--until": until}
    with _ProgressView(state.json) as view, state.connect() as conn, option_values(given):
        if user_id is not None:
            if names or where or date_column:
                raise click.UsageError("--user-id exports one user's data; drop --table.")
            result = export_personal_data(
                conn, out_dir, user_table=user_table, user_id=user_id, children=depth,
                format=cast(Format, fmt), transforms=spec, on_progress=view.progress,
                nullable=cast(Literal["include", "null"], nullable_parents),
            )  # fmt: skip
        else:
            result = export_bundle(
                conn, out_dir, tables=names, where=where, date_column=date_column,
                since=since, until=until, children=0 if children is None else depth,
                format=cast(Format, fmt), transforms=spec, on_progress=view.progress,
                nullable=cast(Literal["include", "null"], nullable_parents),
            )  # fmt: skip
    _render(state, result)


@click.command("export-csv")
@click.argument("table_name", metavar="TABLE")
@click.argument("file", metavar="FILE", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl"]),
    default="csv",
    show_default=True,
    help="CSV with a header, or one JSON object a line.",
)
@_filter_options
@pass_context
def export_csv(
    state: Context,
    table_name: str,
    file: str,
    fmt: str,
    where: tuple[str, ...],
    date_column: str | None,
    since: str | None,
    until: str | None,
    transforms_file: Path | None,
    salt_env: str | None,
) -> None:
    """Export one table's rows to a CSV or JSONL file (FILE '-' for stdout).

    \b
    Example:
      pgwarden export-csv public.content content.csv --where "state = 'published'"
    """
    spec = _transforms(transforms_file, salt_env)
    out: Any = sys.stdout.buffer if file == "-" else Path(file)
    given = {"--since": since, "--until": until}
    with _ProgressView(state.json) as view, state.connect() as conn, option_values(given):
        result = export_table(
            conn, table_name, out, format=cast(FileFormat, fmt), where=where,
            date_column=date_column, since=since, until=until, transforms=spec,
            on_progress=view.progress,
        )  # fmt: skip
    if file == "-":
        return
    if state.json:
        dump_json(state.console, {"file": file, **result.__dict__})
    else:
        state.console.print(
            f"Wrote {result.rows} rows of {result.table} to {file}"
            f" ({format_size(result.bytes)}, {result.seconds:.2f} s)."
        )


def _transforms(path: Path | None, salt_env: str | None) -> TransformSpec | None:
    if path is None:
        return None
    return load_transforms(path, salt_env=salt_env)


def _render(state: Context, result: ExportResult) -> None:
    bundle = result.bundle
    if state.json:
        dump_json(
            state.console,
            {
                "bundle": str(bundle.path),
                "rows": result.rows,
                "seconds": result.seconds,
                "order": list(bundle.order),
                "cycles": [list(c) for c in bundle.cycles],
                "tables": result.tables,
                "transforms": list(bundle.transforms),
            },
        )
        return
    rows = [
        (t.name, t.rows, t.direct, t.added, format_size(t.bytes), f"{t.seconds:.2f} s")
        for t in result.tables
    ]
    state.console.print(
        table(["table", "rows", "selected", "added by closure", "size", "time"], rows)
    )
    state.console.print(
        f"Wrote {result.rows} rows in {len(result.tables)} tables to {bundle.path}"
        f" ({result.seconds:.2f} s)."
    )
    for cycle in bundle.cycles:
        state.console.print(
            Text.assemble(
                ("note:", "bold yellow"),
                f" {', '.join(cycle)} reference each other; "
                "loading them needs deferrable keys or a second pass.",
            ),
            soft_wrap=True,
        )


class _ProgressView(RowProgressView):
    """Show progress on stderr: a bar on a terminal, JSON lines with ``--json``, else nothing."""

    def progress(self, event: TransferProgress) -> None:
        if self.json:
            elapsed = self.bars.elapsed(event.table)
            self.emit({"table": event.table, "rows": event.rows, "elapsed": round(elapsed, 3)})
            return
        self.bars.update(event.table, event.table, event.rows, event.table_rows)
