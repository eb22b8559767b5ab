"""Options and settings the backup commands share: storage, keys, durations."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from pgwarden._units import parse_duration
from pgwarden.backup.crypto import BackupKeyring
from pgwarden.backup.logical import COMPRESSIONS, FORMATS, ROW_COUNTS
from pgwarden.backup.storage import Storage, open_storage
from pgwarden.cli.context import Context
from pgwarden.errors import ConfigError, UserError
from pgwarden.urls import parse_database_url

__all__ = [
    "Duration",
    "copy_storage",
    "database_name",
    "database_option",
    "dump_options",
    "keyring",
    "main_storage",
    "storage_option",
]

F = TypeVar("F", bound=Callable[..., Any])


class Duration(click.ParamType):  # type: ignore[type-arg]
    """A duration: ``90s``, ``30m``, ``24h``, ``7d``, ``2w`` or seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a duration such as 30m, 24h or 7d.", param, ctx)


def _open(state: Context, chosen: str) -> Storage:
    # The S3 endpoint and region settings apply to a URL given on the command line too.
    return open_storage(state.settings.model_copy(update={"backup_storage": chosen}))


def main_storage(state: Context, url: str | None) -> Storage:
    """Open ``--storage``, else PGWARDEN_BACKUP_STORAGE; a user error if neither is set."""
    chosen = url or state.settings.backup_storage
    if not chosen:
        raise ConfigError(
            "no backup storage given.",
            hint="Pass --storage DIR|s3://bucket/prefix, or set PGWARDEN_BACKUP_STORAGE.",
        )
    return _open(state, chosen)


def copy_storage(state: Context, url: str | None) -> Storage | None:
    """Open ``--copy-to``, else PGWARDEN_BACKUP_COPY_STORAGE, else None."""
    chosen = url or state.settings.backup_copy_storage
    return _open(state, chosen) if chosen else None


def keyring(state: Context, *, required: bool = False) -> BackupKeyring | None:
    """Return the keyring of PGWARDEN_ENCRYPTION_KEYS when set (or ``required``)."""
    if state.settings.encryption_keys or required:
        return BackupKeyring.from_settings(state.settings)
    return None


def database_name(state: Context, given: str | None) -> str:
    """Return ``--database``, else the name of the database the URL names."""
    if given:
        return given
    url = parse_database_url(state.resolve_url())
    if not url.database:
        raise UserError("the database URL names no database.", hint="Pass --database NAME.")
    return url.database


storage_option = click.option(
    "--storage",
    "storage_url",
    metavar="URL",
    default=None,
    help="Where backups are: a directory, file:///path or s3://bucket/prefix "
    "(default: PGWARDEN_BACKUP_STORAGE).",
)
database_option = click.option(
    "--database",
    metavar="NAME",
    default=None,
    help="The database whose backups to use (default: the database URL's).",
)


def dump_options(func: F) -> F:
    """Add the options of ``backup create``: what to dump, how, and where to copy it."""
    func = click.option(
        "--staging-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="Where the directory format is staged before upload (default: TMPDIR).",
    )(func)
    func = click.option(
        "--row-counts",
        type=click.Choice(ROW_COUNTS),
        default="exact",
        show_default=True,
        help="exact: count(*) of every table in the dump's snapshot (a full scan each); "
        "estimate: the planner's figures, not checked on restore.",
    )(func)
    func = click.option(
        "--compression-level",
        type=click.IntRange(1, 22),
        default=None,
        help="zstd 1-22 (default 1), gzip 1-9 (default 6).",
    )(func)
    func = click.option(
        "--compression",
        type=click.Choice(COMPRESSIONS),
        default="auto",
        show_default=True,
        help="auto or zstd: pgwarden compresses pg_dump's stream on every CPU; gzip: "
        "pg_dump compresses inside its archive.",
    )(func)
    func = click.option(
        "--jobs",
        type=click.IntRange(1, 64),
        default=None,
        help="Parallel pg_dump workers, directory format (default: one per CPU for a "
        "database of PGWARDEN_BACKUP_PARALLEL_MIN_SIZE, 1GB, or more; else 1).",
    )(func)
    func = click.option(
        "--format",
        "dump_format",
        type=click.Choice(FORMATS),
        default="auto",
        show_default=True,
        help="custom: one streamed archive; directory: files, dumped in parallel with "
        "--jobs; auto: directory for a large database, else custom.",
    )(func)
    func = click.option(
        "--data-only", "section", flag_value="data", help="Rows only, no definitions."
    )(func)
    func = click.option(
        "--schema-only", "section", flag_value="schema", help="Definitions only, no rows."
    )(func)
    func = click.option(
        "--exclude-table",
        "exclude_tables",
        multiple=True,
        metavar="NAME",
        help="Leave this table out (repeatable).",
    )(func)
    func = click.option(
        "--table",
        "tables",
        multiple=True,
        metavar="NAME",
        help="Only this table, as name or schema.name (repeatable; * and ? match).",
    )(func)
    func = click.option(
        "--exclude-schema",
        "exclude_schemas",
        multiple=True,
        metavar="NAME",
        help="Leave this schema out (repeatable).",
    )(func)
    func = click.option(
        "--schema",
        "schemas",
        multiple=True,
        metavar="NAME",
        help="Only this schema (repeatable; * and ? match).",
    )(func)
    func = click.option(
        "--encrypt/--no-encrypt",
        default=None,
        help="Encrypt with the first key of PGWARDEN_ENCRYPTION_KEYS (default: when keys are set).",
    )(func)
    return click.option(
        "--copy-to",
        metavar="URL",
        default=None,
        help="Copy the finished backup to this second storage "
        "(default: PGWARDEN_BACKUP_COPY_STORAGE).",
    )(func)
