"""Options shared by several commands, as decorators."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = ["GlobalOption", "global_options", "server_options"]

F = TypeVar("F", bound=Callable[..., Any])


def server_options(func: F) -> F:
    """Add ``--data-dir`` and ``--port`` for the embedded server."""
    func = click.option(
        "--port",
        type=click.IntRange(1, 65535),
        default=None,
        help="TCP port on 127.0.0.1 (default: PGWARDEN_SERVER_PORT, else 54329).",
    )(func)
    return click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="Data directory (default: PGWARDEN_DATA_DIR, else a per-user data directory).",
    )(func)


class GlobalOption(click.Option):
    """An option of the ``pgwarden`` group that every command accepts as well."""


def global_options(
    callback: Callable[[click.Context, click.Parameter, Any], Any],
) -> list[click.Option]:
    """Return the global options, each handing its value to ``callback``.

    ``pgwarden`` declares them, and every command under it gets its own copies, so that
    they may come before or after the command's name (``pgwarden backup list --json``).
    They are named for the ``Context`` attribute they set, and pass no argument to the
    command's function.
    """
    shared: dict[str, Any] = {"expose_value": False, "callback": callback}
    return [
        GlobalOption(
            ["--database-url", "database_url"],
            metavar="URL",
            default=None,
            help="Database to work on (default: DATABASE_URL, else the embedded server).",
            **shared,
        ),
        GlobalOption(
            ["--config", "config_file"],
            type=click.Path(path_type=Path, dir_okay=False),
            default=None,
            help="TOML config file (default: PGWARDEN_CONFIG, else ./pgwarden.toml if present).",
            **shared,
        ),
        GlobalOption(
            ["--json", "json"],
            is_flag=True,
            help="Print one JSON document instead of tables.",
            **shared,
        ),
        GlobalOption(
            ["-v", "--verbose", "verbose"],
            count=True,
            help="Log more: -v for INFO, -vv for DEBUG.",
            **shared,
        ),
    ]
