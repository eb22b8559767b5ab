"""``pgwarden version`` and ``pgwarden ping``."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

import click
from rich.text import Text

from pgwarden.cli.context import Context, pass_context
from pgwarden.cli.render import dump_json, jsonable, key_value_table, table
from pgwarden.db.binaries import embedded_bin_dir, program_version
from pgwarden.db.ping import ping as ping_server
from pgwarden.urls import redact_url

__all__ = ["ping", "version"]


def _installed(name: str) -> str | None:
    try:
        return package_version(name)
    except PackageNotFoundError:
        return None


@click.command()
@pass_context
def version(state: Context) -> None:
    """Print the versions of pgwarden and of what it runs on.

    \b
    Example:
      pgwarden version --json
    """
    bin_dir = embedded_bin_dir()
    embedded = program_version(bin_dir / "postgres") if bin_dir else None
    info = {
        "pgwarden": _installed("pgwarden"),
        "python": platform.python_version(),
        "sqlalchemy": _installed("sqlalchemy"),
        "psycopg": _installed("psycopg"),
        "embedded_postgresql": embedded[1] if embedded else None,
    }
    if state.json:
        dump_json(state.console, info)
    else:
        state.console.print(key_value_table(info.items()))


@click.command()
@click.option(
    "--samples", type=click.IntRange(1, 1000), default=3, show_default=True,
    help="Round trips to time; the best is reported.",
)  # fmt: skip
@pass_context
def ping(state: Context, samples: int) -> None:
    """Connect, and print the server version, round-trip latency and useful extensions.

    \b
    Example:
      pgwarden --database-url postgresql://app@db.internal/app ping
    """
    with state.connect() as conn:
        result = ping_server(conn, samples=samples)
        url = redact_url(conn.engine.url.set(drivername="postgresql"))
    if state.json:
        dump_json(state.console, {"url": url, **_as_dict(result)})
        return
    role = "standby (in recovery)" if result.in_recovery else "primary"
    state.console.print(Text.assemble(("Connected", "bold green"), f" to {url}"))
    state.console.print(
        key_value_table(
            [
                ("server", f"PostgreSQL {result.server_version} ({role})"),
                ("database", f"{result.database} as {result.user}"),
                ("round trip", f"{result.latency_ms:.2f} ms (best of {samples})"),
            ]
        )
    )
    rows = [
        (
            ext.name,
            ext.state + (" (preloaded)" if ext.preloaded else ""),
            ext.installed_version or ext.available_version,
            ext.purpose,
        )
        for ext in result.extensions
    ]
    state.console.print(table(["extension", "state", "version", "gives"], rows))
    if any(ext.state == "available" for ext in result.extensions):
        state.console.print("Enable an available extension with: CREATE EXTENSION name;")


def _as_dict(result: object) -> dict[str, object]:
    data = jsonable(result)
    assert isinstance(data, dict)
    return data
