"""Options shared by several commands, as decorators."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = ["server_options"]

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
