"""The ``pgwarden`` command: global options, and errors turned into exit codes.

Exit codes: 0 ok; 1 a failure (or findings at or above ``--fail-on``); 2 a user error,
shown as one line saying what was wrong and one saying what to do, never a traceback;
130 interrupted (Ctrl-C); 141 stdout closed by its reader (``| head``), both silent. An
exception nobody expected is a failure: one ``error:`` line, its traceback only with -v.
"""

from __future__ import annotations

import logging
import sys
from importlib import import_module
from pathlib import Path
from typing import Any, NoReturn

import click

from pgwarden.cli._errors import (
    database_error,
    report,
    silence_stdout,
    stdout_closed,
    unexpected,
)
from pgwarden.cli.context import Context, plain_console
from pgwarden.errors import PgwardenError
from pgwarden.logs import configure_logging
from pgwarden.urls import redact_text

__all__ = ["cli", "main"]


class PgwardenGroup(click.Group):
    """A command group that turns every exception into a message and an exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *_COMMANDS})

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own: usage errors and exits, reported by click
        except PgwardenError as exc:
            report(ctx, exc.message, exc.hint, type(exc).__name__)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            ctx.exit(130)  # the user knows: no message
        except Exception as exc:  # the last resort: never a traceback
            _failure(ctx, exc)


def _failure(ctx: click.Context, exc: Exception) -> NoReturn:
    if isinstance(exc, BrokenPipeError) and stdout_closed():
        # `pgwarden ... | head`: the reader has what it wanted.
        silence_stdout()
        ctx.exit(141)
    orig = database_error(exc)
    if orig is None:
        unexpected(ctx, exc)
    # A failure of the database mid-command (lost connection, a statement cancelled):
    # the work failed, the user did nothing wrong.
    detail = redact_text(str(orig)).strip().splitlines()
    report(ctx, f"database error: {detail[0] if detail else exc}", None, "DatabaseError")
    ctx.exit(1)


@click.group(cls=PgwardenGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database-url",
    metavar="URL",
    default=None,
    help="Database to work on (default: DATABASE_URL, else the embedded server).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML config file (default: PGWARDEN_CONFIG, else ./pgwarden.toml if present).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of tables.")
@click.option("-v", "--verbose", count=True, help="Log more: -v for INFO, -vv for DEBUG.")
@click.version_option(package_name="pgwarden", prog_name="pgwarden")
@click.pass_context
def cli(
    ctx: click.Context,
    database_url: str | None,
    config_file: Path | None,
    as_json: bool,
    verbose: int,
) -> None:
    """Keep a PostgreSQL database fast, observable and recoverable.

    \b
    Example:
      pgwarden server start && pgwarden ping
    """
    state = ctx.ensure_object(Context)
    state.database_url = database_url
    state.config_file = config_file
    state.json = as_json
    state.verbose = verbose
    state.console = plain_console(soft_wrap=as_json)
    level: int | None = None if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    try:
        configure_logging(level=level or state.settings.log_level, fmt=state.settings.log_format)
    except PgwardenError:
        # Settings are reported by the command that needs them; logging falls back.
        configure_logging(level=level or logging.WARNING)


# Each command's module is imported only when that command runs (or help lists it):
# importing them all, with SQLAlchemy's ORM, pglast and boto3 behind them, would cost
# every invocation a second or more, a WAL archive_command included.
_COMMANDS = {
    "version": "info:version",
    "ping": "info:ping",
    "server": "server:server",
    "audit-orm": "observe:audit_orm",
    "doctor": "doctor:doctor_command",
    "insight": "insight:insight",
    "queries": "ops:queries",
    "cancel": "ops:cancel",
    "advise": "advise:advise",
    "vacuum": "maintain:vacuum",
    "analyze": "maintain:analyze",
    "reindex": "maintain:reindex",
    "backup": "backup:backup",
    "backup-db": "backup:backup_db",
    "restore": "restore:restore",
    "restore-db": "restore:restore_db",
    "export": "transfer_export:export",
    "export-csv": "transfer_export:export_csv",
    "import": "transfer_import:import_group",
    "import-csv": "transfer_import:import_csv_command",
    "erase-user": "transfer_import:erase_user_command",
}


class _Commands(dict[str, click.Command]):
    """The top-level commands, each imported the first time it is asked for."""

    def __missing__(self, name: str) -> click.Command:
        if name not in _COMMANDS:
            raise KeyError(name)
        module, attribute = _COMMANDS[name].split(":")
        command: click.Command = getattr(import_module(f"pgwarden.cli.{module}"), attribute)
        self[name] = command
        return command

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default


cli.commands = _Commands()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI, exiting with its exit code."""
    cli.main(args=argv, prog_name="pgwarden")
    sys.exit(0)
