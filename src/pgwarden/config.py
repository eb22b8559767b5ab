"""Settings: one model read from the command line, the environment, ``.env`` and a file.

Precedence, highest first: values given by the caller (the CLI's options), environment
variables, a ``.env`` file in the working directory, the TOML config file
(``--config``, else ``PGWARDEN_CONFIG``, else ``./pgwarden.toml`` when present), defaults.

The database settings keep the names applications already use (``DATABASE_URL``,
``DB_POOL_SIZE``, ...); everything else is ``PGWARDEN_*``. In the TOML file the keys are
the field names below (``database_url``, ``db_pool_size``, ``log_format``, ...).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from pgwarden._units import parse_duration, parse_size
from pgwarden.errors import ConfigError
from pgwarden.urls import parse_database_url, redact_text

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "TABLES_ELSEWHERE",
    "Settings",
    "config_file_path",
    "env_name",
    "load_settings",
]

DEFAULT_CONFIG_FILE = Path("pgwarden.toml")
# Tables of the config file that other parts read (the scheduled jobs: pgwarden.tasks;
# the migration linter: pgwarden.schema.lint).
TABLES_ELSEWHERE = ("targets", "tasks", "alerts", "lint")
_REPLICA_SPLIT = re.compile(r"\s*,\s*(?=postgres(?:ql)?(?:\+\w+)?://)|\s+")
_config_values: ContextVar[dict[str, Any] | None] = ContextVar(
    "pgwarden_config_values", default=None
)


def _db(name: str, description: str, **kwargs: Any) -> Any:
    """Declare a field read from the unprefixed variable ``name`` (``DATABASE_URL``)."""
    return Field(
        validation_alias=AliasChoices(name, name.lower()), description=description, **kwargs
    )


class Settings(BaseSettings):
    """Everything pgwarden can be configured with, validated."""

    model_config = SettingsConfigDict(
        env_prefix="PGWARDEN_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    database_url: str | None = _db(
        "DATABASE_URL",
        "a PostgreSQL URL such as postgresql://user:password@host:5432/db",
        default=None,
    )
    database_replica_url: str | None = _db(
        "DATABASE_REPLICA_URL",
        "one or more PostgreSQL URLs of read replicas, separated by spaces or commas",
        default=None,
    )
    db_pool_size: int = _db(
        "DB_POOL_SIZE", "a whole number of connections, 1 or more", default=20, ge=1
    )
    db_max_overflow: int = _db(
        "DB_MAX_OVERFLOW", "a whole number of extra connections, 0 or more", default=30, ge=0
    )
    db_pool_timeout: float = _db(
        "DB_POOL_TIMEOUT", "seconds to wait for a pooled connection, above 0", default=30.0, gt=0
    )
    db_pool_recycle: int = _db(
        "DB_POOL_RECYCLE",
        "seconds after which a connection is replaced; -1 for never",
        default=3600,
        ge=-1,
    )
    db_echo: bool = _db("DB_ECHO", "true or false", default=False)

    statement_timeout_ms: int | None = Field(
        default=None,
        validation_alias=AliasChoices("PGWARDEN_STATEMENT_TIMEOUT", "statement_timeout"),
        description="a duration such as 30s, 500ms or 2min (a bare number is milliseconds)",
    )
    connect_timeout: int = Field(
        default=10, ge=1, le=3600, description="whole seconds to wait for a connection, 1-3600"
    )
    application_name: str = Field(
        default="pgwarden", max_length=63, description="text of at most 63 characters"
    )
    log_format: Literal["text", "json"] = Field(default="text", description="text or json")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="WARNING", description="DEBUG, INFO, WARNING or ERROR"
    )
    data_dir: Path | None = Field(
        default=None, description="a directory for the embedded PostgreSQL server's data"
    )
    server_port: int = Field(
        default=54329, ge=1, le=65535, description="a TCP port, 1-65535, for the embedded server"
    )
    backup_storage: str | None = Field(
        default=None,
        description="where backups are kept: a directory, file:///path or s3://bucket/prefix",
    )
    backup_copy_storage: str | None = Field(
        default=None,
        description="a second storage each backup is copied to (off-site), same forms",
    )
    backup_parallel_min_size: int = Field(
        default=1024**3,
        ge=0,
        description="a size such as 1GB: from it on, backups and restores run one job per CPU",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="an S3-compatible endpoint such as http://127.0.0.1:9000"
    )
    s3_region: str | None = Field(default=None, description="an S3 region such as eu-west-1")
    alembic_config: Path | None = Field(
        default=None, description="the path of an Alembic config file (alembic.ini)"
    )
    migrations_models: str | None = Field(
        default=None,
        description="module:attribute of the models' MetaData or declarative base",
    )
    encryption_keys: str | None = Field(
        default=None,
        repr=False,  # key material: never in repr(settings), hence never in a log
        description="key-id:base64 pairs separated by commas, the first is used to encrypt",
    )

    @field_validator("database_url", "database_replica_url")
    @classmethod
    def _postgresql_url(cls, value: str | None, info: Any) -> str | None:
        if value is None or value.strip() == "":
            return None
        source = env_name(info.field_name)
        # Several replicas: URLs apart by spaces, or by commas before a scheme (a comma
        # inside one URL separates the hosts of a libpq multi-host URL).
        parts = [value] if info.field_name == "database_url" else _REPLICA_SPLIT.split(value)
        try:
            return " ".join(
                parse_database_url(part, source=source).render_as_string(hide_password=False)
                for part in parts
                if part
            )
        except ConfigError as exc:
            raise ValueError(exc.message) from None

    def database_replica_urls(self) -> list[str]:
        """Return each URL of ``DATABASE_REPLICA_URL``, in the order given."""
        return (self.database_replica_url or "").split()

    @field_validator("statement_timeout_ms", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is None or value == "" or isinstance(value, int):
            return value or None
        try:
            span = parse_duration(str(value), unit="ms")
        except ValueError:
            raise ValueError("expected a duration such as 30s, 500ms or 2min") from None
        return round(span / timedelta(milliseconds=1)) or None

    @field_validator("backup_parallel_min_size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        if isinstance(value, int) or value is None:
            return value
        try:
            return parse_size(str(value).strip())
        except ValueError:
            raise ValueError("expected a size such as 1GB, 512MB or a number of bytes") from None

    @field_validator("encryption_keys", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        # A validation error quotes its input; keys must reach the parser that never does.
        if value is None or isinstance(value, str):
            return value or None
        if isinstance(value, list | tuple):
            return ",".join(str(item) for item in value)
        return str(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, redact_text(value) if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = InitSettingsSource(settings_cls, init_kwargs=_config_values.get() or {})
        return init_settings, env_settings, dotenv_settings, config_file


def env_name(field: str) -> str:
    """Return the environment variable that sets ``field``: ``db_pool_size`` -> ``DB_POOL_SIZE``."""
    info: FieldInfo | None = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        if isinstance(first, str):
            return first
    return f"PGWARDEN_{field.upper()}"


_FIELD_BY_ALIAS = {env_name(field).lower(): field for field in Settings.model_fields}


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist.",
            hint="Check the path given with --config or PGWARDEN_CONFIG.",
        ) from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"config file {path} cannot be read: {exc}.", hint="Fix the file; it must be TOML."
        ) from None
    section = data.get("pgwarden", data)
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path}: [pgwarden] must be a table.")
    known = set(Settings.model_fields)
    unknown = sorted(set(section) - known - set(TABLES_ELSEWHERE))
    if unknown:
        raise ConfigError(
            f"config file {path} has unknown keys: {', '.join(unknown)}.",
            hint=f"Known keys: {', '.join(sorted(known))}.",
        )
    return {key: value for key, value in section.items() if key not in TABLES_ELSEWHERE}


@contextmanager
def _config_source(values: dict[str, Any]) -> Iterator[None]:
    token = _config_values.set(values)
    try:
        yield
    finally:
        _config_values.reset(token)


def config_file_path(config_file: Path | str | None = None) -> Path | None:
    """Return the config file in force: ``config_file``, PGWARDEN_CONFIG, ./pgwarden.toml."""
    if config_file is not None:
        return Path(config_file)
    if os.environ.get("PGWARDEN_CONFIG"):
        return Path(os.environ["PGWARDEN_CONFIG"])
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Load and validate settings from every source, ``overrides`` taking precedence.

    ``overrides`` whose value is None are ignored, so a CLI can pass its options through
    unchanged. A bad value raises :class:`ConfigError` naming the variable and the form
    it expects; a password in a bad URL is never quoted back.
    """
    path = config_file_path(config_file)
    file_values = _read_config_file(path) if path is not None else {}
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        with _config_source(file_values):
            return Settings(**given)
    except ValidationError as exc:
        raise _config_error(exc) from None


def _config_error(exc: ValidationError) -> ConfigError:
    lines = []
    hints = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        field = _FIELD_BY_ALIAS.get(field.lower(), field)
        if field in Settings.model_fields:
            name = env_name(field)
            form = Settings.model_fields[field].description
        else:
            name, form = field, None
        value = redact_text(str(error.get("input", "")))
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{name}={value!r}: {message}")
        if form:
            hints.append(f"{name} must be {form}.")
    return ConfigError(
        "invalid setting " + "; ".join(lines), hint=" ".join(hints) or "Fix the setting named."
    )
