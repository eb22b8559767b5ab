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
from typing import Any, NoReturn

import click
from click.core import ParameterSource

from pgwarden.cli._errors import (
    database_error,
    report,
    silence_stdout,
    stdout_closed,
    unexpected,
)
from pgwarden.cli.context import Context, plain_console
from pgwarden.cli.options import GlobalOption, global_options
from pgwarden.errors import PgwardenError
from pgwarden.logs import configure_logging
from pgwarden.urls import redact_text, redact_url

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


def _merge_global(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Set a global option given at any level; refuse one given twice with two values."""
    if ctx.get_parameter_source(param.name or "") is not ParameterSource.COMMANDLINE:
        return value
    given: dict[str, tuple[str, Any]] = ctx.meta.setdefault("pgwarden.global_options", {})
    earlier = given.get(param.name or "")
    if earlier is not None and earlier[1] != value:
        where, first = earlier
        raise click.UsageError(
            f"{param.opts[-1] if param.name == 'verbose' else param.opts[0]} given twice with"
            f" different values: {_shown(param, first)} (after `{where}`)"
            f" and {_shown(param, value)} (after `{ctx.command_path}`); give it once.",
            ctx=ctx,
        )
    given[param.name or ""] = (ctx.command_path, value)
    state = ctx.ensure_object(Context)
    setattr(state, param.name or "", value)
    _apply_globals(state)
    return value


def _shown(param: click.Parameter, value: Any) -> str:
    if param.name == "verbose":
        return "-" + "v" * int(value)
    if param.name == "database_url":
        return redact_url(str(value))
    return str(value)


def _apply_globals(state: Context) -> None:
    """Make the console, the settings and the logging follow the global options."""
    state.console = plain_console(soft_wrap=state.json)
    state._settings = None  # reloaded with the URL and file given so far
    verbose = state.verbose
    level: int | None = None if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    try:
        configure_logging(level=level or state.settings.log_level, fmt=state.settings.log_format)
    except PgwardenError:
        # Settings are reported by the command that needs them; logging falls back.
        configure_logging(level=level or logging.WARNING)


def _add_global_options(command: click.Command) -> None:
    """Let ``command`` and the commands under it take the global options too."""
    if not any(isinstance(param, GlobalOption) for param in command.params):
        command.params.extend(global_options(_merge_global))
    if isinstance(command, click.Group):
        for subcommand in command.commands.values():
            _add_global_options(subcommand)


@click.group(
    cls=PgwardenGroup,
    params=global_options(_merge_global),
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="pgwarden", prog_name="pgwarden")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Keep a PostgreSQL database fast, observable and recoverable.

    The options below may also come after a command, at any depth:
    `pgwarden backup list --json` is `pgwarden --json backup list`.

    \b
    Example:
      pgwarden server start && pgwarden ping
    """
    _apply_globals(ctx.ensure_object(Context))


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
    "replicas": "replicas:replicas",
    "advise": "advise:advise",
    "vacuum": "maintain:vacuum",
    "analyze": "maintain:analyze",
    "reindex": "maintain:reindex",
    "backup": "backup:backup",
    "backup-db": "backup:backup_db",
    "restore": "restore:restore",
    "restore-db": "restore:restore_db",
    "wal": "wal:wal",
    "pitr": "pitr:pitr",
    "export": "transfer_export:export",
    "export-csv": "transfer_export:export_csv",
    "import": "transfer_import:import_group",
    "import-csv": "transfer_import:import_csv_command",
    "erase-user": "transfer_import:erase_user_command",
    "serve": "api:serve",
    "tokens": "api:tokens",
    "schedule": "tasks:schedule",
    "worker": "tasks:worker",
    "beat": "tasks:beat",
    "fleet": "tasks:fleet",
    "migrations": "migrations:migrations",
}


class _Commands(dict[str, click.Command]):
    """The top-level commands, each imported the first time it is asked for."""

    def __missing__(self, name: str) -> click.Command:
        if name not in _COMMANDS:
            raise KeyError(name)
        module, attribute = _COMMANDS[name].split(":")
        command: click.Command = getattr(import_module(f"pgwarden.cli.{module}"), attribute)
        _add_global_options(command)
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
