"""What every command gets: settings, output mode, and the database to work on."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import NullPool

from pgwarden.config import Settings, load_settings
from pgwarden.db.embedded import EmbeddedServer
from pgwarden.db.engines import connect, create_engine
from pgwarden.errors import ConfigError

__all__ = ["Context", "pass_context", "plain_console"]


def plain_console(**options: Any) -> Console:
    """Return a console that prints strings as given: no markup, emoji codes or highlights.

    What the commands print quotes names from databases and storage (``[/x]``,
    ``:smile:``), so a styled part is a rich ``Text``, never markup in a string.
    """
    return _PlainConsole(markup=False, emoji=False, highlight=False, **options)


class _PlainConsole(Console):
    def on_broken_pipe(self) -> None:
        # Rich would exit 1 on its own; the CLI's edge handles every closed stdout alike.
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


@dataclass
class Context:
    """State shared by the commands of one invocation, filled from the global options."""

    database_url: str | None = None
    config_file: Path | None = None
    json: bool = False
    verbose: int = 0
    console: Console = field(default_factory=plain_console)
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        """Return the settings, loaded on first use so `pgwarden version` never fails on them."""
        if self._settings is None:
            self._settings = load_settings(self.config_file, database_url=self.database_url)
        return self._settings

    def embedded(self, data_dir: Path | None = None, port: int | None = None) -> EmbeddedServer:
        """Return the embedded server named by the options, else by the settings."""
        return EmbeddedServer(
            data_dir or self.settings.data_dir, port=port or self.settings.server_port
        )

    def resolve_url(self) -> str:
        """Return the database URL: --database-url, DATABASE_URL, or the embedded server's."""
        if self.settings.database_url:
            return self.settings.database_url
        server = self.embedded()
        if server.status().running:
            return server.url()
        raise ConfigError(
            "no database URL given, and the embedded server is not running.",
            hint="Pass --database-url or set DATABASE_URL, or run `pgwarden server start`.",
        )

    def engine(self, *, database: str | None = None, **engine_args: Any) -> Engine:
        """Return an engine for one command: no pool kept, named for the CLI.

        ``database`` swaps the URL's database for another on the same server.
        """
        url: str | URL = self.resolve_url()
        if database is not None:
            url = make_url(url).set(database=database)
        return create_engine(
            url,
            settings=self.settings,
            application_name="pgwarden-cli",
            poolclass=NullPool,
            **engine_args,
        )

    @contextmanager
    def connect(self, *, database: str | None = None, **engine_args: Any) -> Iterator[Connection]:
        """Connect for one command, and dispose of the engine when the block ends.

        A failure to connect is a :class:`~pgwarden.errors.ConnectionFailed` that says why;
        ``database`` and ``engine_args`` are as for :meth:`engine`.
        """
        engine = self.engine(database=database, **engine_args)
        try:
            with connect(engine) as conn:
                yield conn
        finally:
            engine.dispose()


pass_context = click.make_pass_decorator(Context, ensure=True)
