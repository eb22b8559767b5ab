"""``pgwarden queries`` and ``pgwarden cancel``: see what sessions do, and stop one."""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from pgwarden.cli.context import Context, pass_context
from pgwarden.cli.render import dump_json
from pgwarden.insight.activity import ServerSession, sessions
from pgwarden.insight.sessions import format_duration, short
from pgwarden.insight.signals import CancelResult
from pgwarden.insight.signals import cancel as cancel_session

__all__ = ["cancel", "queries"]


@click.command()
@click.option("--running", is_flag=True, help="Only sessions running a query now.")
@click.option(
    "--min-duration", "min_duration_s", type=click.FloatRange(min=0), default=0.0,
    metavar="SECONDS", help="Only sessions in their state this long or longer.",
)  # fmt: skip
@click.option(
    "--all", "everything", is_flag=True,
    help="Every session of the server: idle ones, other databases, background processes.",
)  # fmt: skip
@pass_context
def queries(state: Context, running: bool, min_duration_s: float, everything: bool) -> None:
    """List the sessions of this database that are running a query or in a transaction.

    Longest in their state first, with what each waits for and the pids blocking it.
    The query is cut short in the table and whole with --json.

    \b
    Example:
      pgwarden queries --running --min-duration 30
    """
    with state.connect() as conn:
        found = sessions(
            conn, running=running, min_duration_s=min_duration_s, everything=everything
        )
    if state.json:
        dump_json(state.console, found)
        return
    if not found:
        state.console.print("No sessions match.")
        return
    state.console.print(_table(found))


def _table(found: list[ServerSession]) -> Table:
    # Only the pid and the duration never wrap: on a narrow terminal the other cells
    # wrap instead of being cut (the query is cut anyway; --json has it whole).
    result = Table(header_style="bold")
    for name in ("pid", "user", "database", "application", "client", "state", "duration"):
        result.add_column(name, no_wrap=name in ("pid", "duration"), overflow="fold")
    for name in ("waits", "blocked by", "query"):
        result.add_column(name, overflow="fold")
    for session in found:
        # Text, not markup: a query's own brackets must print as they are.
        result.add_row(*(Text("-" if cell is None else str(cell)) for cell in _row(session)))
    return result


def _row(session: ServerSession) -> list[object]:
    wait = None
    if session.wait_event:
        wait = f"{session.wait_event_type}:{session.wait_event}"
    state = session.state or session.backend_type
    return [
        session.pid,
        session.user,
        session.database,
        session.application or None,
        session.client,
        state,
        format_duration(session.duration_s),
        wait,
        ", ".join(str(pid) for pid in session.blocked_by) or None,
        short(session.query, 60) if session.query else None,
    ]


@click.command()
@click.argument("pid", type=click.IntRange(min=1))
@click.option(
    "--terminate", is_flag=True,
    help="End the whole session (rolling back its transaction), not only its query.",
)  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Show the session that would be hit; send nothing.")
@click.option(
    "--wait", "wait_s", type=click.FloatRange(min=0), default=5.0, show_default=True,
    metavar="SECONDS", help="With --terminate, how long to wait for the session to end.",
)  # fmt: skip
@pass_context
def cancel(state: Context, pid: int, terminate: bool, dry_run: bool, wait_s: float) -> None:
    """Cancel the query of session PID, or with --terminate end the session.

    Refuses pgwarden's own session and server processes that are not client
    sessions (autovacuum workers excepted, unless preventing wraparound). Exits 1
    if the signal could not be delivered or the session outlived --wait.

    \b
    Example:
      pgwarden cancel 4321 --dry-run && pgwarden cancel 4321
    """
    with state.connect() as conn:
        result = cancel_session(conn, pid, terminate=terminate, dry_run=dry_run, wait_s=wait_s)
    if state.json:
        dump_json(state.console, result)
    else:
        _print(state, result)
    if not dry_run and (not result.delivered or result.ended is False):
        raise click.exceptions.Exit(1)


def _print(state: Context, result: CancelResult) -> None:
    session = result.session
    say = state.console.print
    what = "end the session" if result.action == "terminate" else "cancel the query"
    if result.dry_run:
        say(f"Would {what} of pid {result.pid}:", markup=False)
    elif not result.delivered:
        say(f"pid {result.pid} was not signalled: it ended first.", markup=False)
    elif result.action == "cancel":
        say(f"Cancel signal delivered to pid {result.pid}.", markup=False)
    elif result.ended:
        say(f"Terminate signal delivered; session {result.pid} has ended.", markup=False)
    else:
        say(
            f"Terminate signal delivered to pid {result.pid}, but the session is still "
            "there; look again with `pgwarden queries --all`.",
            markup=False,
        )
    client = f", from {session.client}" if session.client else ""
    say(
        f"  {session.user or '?'} on {session.database or '?'} "
        f"({session.application or 'no application name'}{client}), "
        f"{session.state or session.backend_type} for {format_duration(session.duration_s)}",
        markup=False,
    )
    say(f"  query: {short(session.query, 200)}", markup=False)
    if result.dry_run:
        say(f"  by running: {result.statement}", markup=False)
    if result.action == "cancel" and session.state != "active":
        say(
            f"Note: pid {result.pid} was not running a query, so a cancel changes nothing; "
            "--terminate ends the session.",
            markup=False,
        )
