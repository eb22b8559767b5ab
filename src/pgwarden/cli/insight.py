"""``pgwarden insight``: snapshots of sizes and query statistics, and their trends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from pgwarden._units import format_size
from pgwarden.cli.context import Context, pass_context
from pgwarden.cli.render import dump_json, table
from pgwarden.insight import history

__all__ = ["insight"]

F = TypeVar("F", bound=Callable[..., Any])


def _pair_options(func: F) -> F:
    """Add the options that choose the two snapshots to compare."""
    for option in reversed(
        [
            click.option(
                "--days", type=click.FloatRange(min=0, min_open=True), default=None,
                help="Compare the latest snapshot with one at least this many days older.",
            ),
            click.option("--before", type=int, default=None, help="Id of the earlier snapshot."),
            click.option("--after", type=int, default=None, help="Id of the later snapshot."),
        ]
    ):  # fmt: skip
        func = option(func)
    return func


@click.group("insight")
def insight() -> None:
    """Keep a history of sizes and query statistics, and read trends from it.

    \b
    Example:
      pgwarden insight snapshot && pgwarden insight growth --days 7
    """


@insight.command("snapshot")
@click.option(
    "--keep-days", type=click.IntRange(min=1), default=None,
    help="Delete snapshots older than this many days.",
)  # fmt: skip
@pass_context
def snapshot_command(state: Context, keep_days: int | None) -> None:
    """Store sizes, query statistics and key figures in the database's pgwarden schema.

    \b
    Example:
      pgwarden insight snapshot --keep-days 90
    """
    with state.connect() as conn:
        taken = history.snapshot(conn, keep_days=keep_days)
        conn.commit()
    if state.json:
        dump_json(state.console, taken)
        return
    queries = f"{taken.statements} statements" if taken.statements_tracked else (
        "no statements (pg_stat_statements is not available)"
    )  # fmt: skip
    state.console.print(
        f"snapshot {taken.id} taken at {taken.taken_at:%Y-%m-%d %H:%M:%S %Z}: "
        f"{taken.relations} tables and indexes, {queries}"
    )


@insight.command("snapshots")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@pass_context
def snapshots_command(state: Context, limit: int) -> None:
    """List the stored snapshots, newest first.

    \b
    Example:
      pgwarden insight snapshots --limit 10
    """
    with state.connect() as conn:
        found = history.snapshots(conn, limit=limit)
    if state.json:
        dump_json(state.console, {"snapshots": found})
        return
    rows = (
        (s.id, f"{s.taken_at:%Y-%m-%d %H:%M:%S}", format_size(s.figures.get("database_bytes", 0)),
         s.relations, s.statements if s.statements_tracked else "-")
        for s in found
    )  # fmt: skip
    state.console.print(table(["id", "taken at", "database size", "relations", "statements"], rows))


@insight.command("growth")
@_pair_options
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@pass_context
def growth_command(
    state: Context, days: float | None, before: int | None, after: int | None, limit: int
) -> None:
    """Show the tables and indexes that grew most between two snapshots.

    By default the first snapshot is compared with the latest.

    \b
    Example:
      pgwarden insight growth --days 30
    """
    with state.connect() as conn:
        grown = history.growth(conn, days=days, before=before, after=after, limit=limit)
    if state.json:
        dump_json(state.console, {"growth": grown})
        return
    rows = (
        (f"{g.schema}.{g.name}", g.kind, format_size(g.before_bytes), format_size(g.after_bytes),
         ("+" if g.delta_bytes >= 0 else "") + format_size(g.delta_bytes),
         "-" if g.bytes_per_day is None else format_size(int(g.bytes_per_day)) + "/day")
        for g in grown
    )  # fmt: skip
    state.console.print(table(["relation", "kind", "before", "after", "growth", "rate"], rows))


@insight.command("regressions")
@_pair_options
@click.option("--factor", type=click.FloatRange(min=1), default=1.5, show_default=True,
              help="How many times slower a call must have got.")  # fmt: skip
@click.option("--min-calls", type=click.IntRange(min=1), default=100, show_default=True,
              help="Calls needed both before and after.")  # fmt: skip
@pass_context
def regressions_command(
    state: Context,
    days: float | None,
    before: int | None,
    after: int | None,
    factor: float,
    min_calls: int,
) -> None:
    """Show the queries whose mean time per call rose between two snapshots.

    \b
    Example:
      pgwarden insight regressions --days 1 --factor 2
    """
    with state.connect() as conn:
        slower = history.regressions(
            conn, days=days, before=before, after=after, factor=factor, min_calls=min_calls
        )
    if state.json:
        dump_json(state.console, {"regressions": slower})
        return
    rows = (
        (r.queryid, f"{r.before_mean_ms:.2f}", f"{r.after_mean_ms:.2f}", f"{r.factor:.1f}x",
         r.after_calls, " ".join(r.query.split())[:80])
        for r in slower
    )  # fmt: skip
    columns = ["queryid", "mean before ms", "mean after ms", "slower", "calls", "query"]
    state.console.print(table(columns, rows))
