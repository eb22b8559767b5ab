"""``pgwarden advise indexes``: the indexes that would make the workload cheaper."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.text import Text

from pgwarden._units import format_size
from pgwarden.advise import IndexAdvice, advise_indexes, alembic_migration, read_queries
from pgwarden.advise.evaluate import Method
from pgwarden.cli.context import Context, pass_context
from pgwarden.cli.render import dump_json, jsonable, table

__all__ = ["advise"]

_SQL_SHOWN = 100  # characters of a query shown in a table


@click.group()
def advise() -> None:
    """Recommend changes that make the database faster.

    \b
    Example:
      pgwarden advise indexes --alembic
    """


@advise.command()
@click.option(
    "--queries",
    "queries_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="SQL file of statements separated by semicolons (default: pg_stat_statements).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help="From pg_stat_statements: how many statements, most total time first.",
)
@click.option(
    "--min-calls",
    type=click.IntRange(0),
    default=10,
    show_default=True,
    help="From pg_stat_statements: leave out statements called fewer times.",
)
@click.option(
    "--min-factor",
    type=click.FloatRange(1.0, min_open=True),
    default=2.0,
    show_default=True,
    help="Recommend an index only if it makes a query this many times cheaper.",
)
@click.option(
    "--write-heavy-factor",
    type=click.FloatRange(1.0, min_open=True),
    default=5.0,
    show_default=True,
    help="The factor needed on a table written more than read.",
)
@click.option(
    "--method",
    type=click.Choice(["auto", "hypopg", "scratch"]),
    default="auto",
    show_default=True,
    help="How to try candidates: hypopg's hypothetical indexes, a scratch copy, or hypopg "
    "when it can be used.",
)
@click.option(
    "--sample-rows",
    type=click.IntRange(1),
    default=100_000,
    show_default=True,
    help="Scratch copy: rows copied per table at most.",
)
@click.option("--alembic", is_flag=True, help="Also print an Alembic migration for the indexes.")
@pass_context
def indexes(
    state: Context,
    queries_file: Path | None,
    limit: int,
    min_calls: int,
    min_factor: float,
    write_heavy_factor: float,
    method: str,
    sample_rows: int,
    alembic: bool,
) -> None:
    """Recommend B-tree indexes for the top queries, each tried on the planner.

    Candidates come from the columns the queries compare, join and sort on; each is
    tried with hypopg if the server has it, otherwise on a scratch copy of the tables
    that is dropped afterwards. Nothing in the database changes.

    \b
    Example:
      pgwarden advise indexes --queries slow.sql --alembic
    """
    queries = read_queries(queries_file) if queries_file is not None else None
    with state.connect() as conn, _progress(state) as progress:
        advice = advise_indexes(
            conn,
            queries=queries,
            limit=limit,
            min_calls=min_calls,
            min_factor=min_factor,
            write_heavy_factor=write_heavy_factor,
            method=cast(Method, method),
            sample_rows=sample_rows,
            progress=progress,
        )
    migration = (
        alembic_migration(advice.recommendations, down_revision=advice.alembic_revision)
        if alembic
        else None
    )
    if state.json:
        document = jsonable(advice)
        if migration is not None:
            document["alembic_migration"] = migration
        dump_json(state.console, document)
        return
    _render(state, advice, migration)


@contextmanager
def _progress(state: Context) -> Iterator[Callable[[str, int, int], None] | None]:
    """Yield a progress callback drawing a bar on a terminal, else None."""
    if state.json or not state.console.is_terminal:
        yield None
        return
    with Progress(
        TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(),
        console=state.console, transient=True,
    ) as bar:  # fmt: skip
        tasks: dict[str, TaskID] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield update


def _render(state: Context, advice: IndexAdvice, migration: str | None) -> None:
    out = state.console
    method = advice.method or "none (nothing to try)"
    out.print(Text.assemble(("method:", "bold"), f" {method} - {advice.method_reason}"))
    out.print(
        f"{advice.queries_analyzed} queries analysed, {advice.candidates_tried} candidate "
        f"indexes tried, {len(advice.recommendations)} recommended."
    )
    for sampled in advice.sampled_tables:
        out.print(
            Text(
                f"{sampled.schema}.{sampled.table}: {sampled.rows_copied:,} of about "
                f"{sampled.rows_estimated:,} rows copied; its costs are for that sample.",
                style="dim",
            )
        )
    for note in advice.notes:
        out.print(_note(note))
    for index in advice.recommendations:
        out.print()
        out.print(
            Text.assemble(
                (index.name, "bold green"),
                f" on {index.schema}.{index.table} {index.candidate.shape}, "
                f"about {format_size(index.size_bytes)} ({index.size_source})",
            )
        )
        rows = [
            (
                f"{query.cost_before:,.1f}",
                f"{query.cost_after:,.1f}",
                f"{query.factor:,.1f}x",
                "-" if query.calls is None else f"{query.calls:,}",
                _short(query.sql),
            )
            for query in index.queries
        ]
        out.print(table(["cost before", "after", "factor", "calls", "query"], rows))
        for note in index.notes:
            out.print(_note(note))
        out.print(index.create_sql, soft_wrap=True)
    if not advice.recommendations:
        out.print("No index to recommend: the queries are served as well as an index could.")
    if advice.skipped:
        reasons = Counter(skipped.reason.split(":", 1)[0] for skipped in advice.skipped)
        summary = "; ".join(f"{count} {reason}" for reason, count in reasons.most_common())
        skipped = f"{len(advice.skipped)} queries skipped ({summary}); --json lists them."
        out.print(Text(skipped, style="dim"))
    for unserved in advice.unserved:
        out.print(Text(f"not served: {_short(unserved.sql)}: {unserved.reason}", style="dim"))
    if migration is not None:
        out.print()
        out.print(migration, soft_wrap=True)


def _note(note: str) -> Text:
    return Text.assemble(("note:", "yellow"), " ", note)


def _short(sql: str) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= _SQL_SHOWN else flat[: _SQL_SHOWN - 1] + "…"
