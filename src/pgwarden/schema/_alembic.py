"""Reach Alembic: load a config, run its commands quietly, on session settings we choose.

The env.py of an application opens its own connection (sync or async, from the URL we
hand it in ``config.attributes["url"]`` and ``sqlalchemy.url``). The lock and statement
timeouts reach that connection through a pool ``connect`` listener that acts only on
the thread running the command: every pool, the one under an async engine too, calls
it for each new connection, so it works whatever env.py builds and whatever driver.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import Pool

from pgwarden._extras import importing_extra
from pgwarden.schema.errors import MigrationFailed, MigrationsNotFound, RevisionNotFound

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import Script, ScriptDirectory

__all__ = [
    "is_lock_timeout",
    "load_config",
    "offline_sql",
    "resolve_revisions",
    "run_command",
    "script_directory",
]

ALEMBIC = {"alembic": "alembic", "mako": "alembic"}
NEEDS = "Migrations need {package}"
DEFAULT_INI = Path("alembic.ini")
LOCK_NOT_AVAILABLE = "55P03"
CONFIG_HINT = (
    "Pass -c/--alembic-config PATH, set PGWARDEN_ALEMBIC_CONFIG, or create one with "
    "`pgwarden migrations init`."
)

# Session settings for the connections opened by the thread that runs a command.
_SESSION: dict[int, dict[str, str]] = {}
_LISTENING = threading.Lock()
_listening = False


def load_config(
    config: str | Path | Config | None = None, *, url: str | URL | None = None
) -> Config:
    """Return the Alembic config at ``config`` (a path, a Config, or ./alembic.ini).

    ``url`` is handed to env.py as ``config.attributes["url"]`` and ``sqlalchemy.url``.
    Raise :class:`MigrationsNotFound` when there is no config or script directory.
    """
    with importing_extra("migrations", NEEDS, ALEMBIC):
        from alembic.config import Config

    if isinstance(config, Config):
        loaded = config
    else:
        path = Path(config) if config is not None else DEFAULT_INI
        if not path.is_file():
            raise MigrationsNotFound(f"no Alembic config at {path}.", hint=CONFIG_HINT)
        loaded = Config(str(path))
    loaded.output_buffer = io.StringIO()
    loaded.attributes.setdefault("quiet_logging", True)
    if url is not None:
        text = make_url(url).render_as_string(hide_password=False)
        loaded.attributes["url"] = text
        loaded.set_main_option("sqlalchemy.url", text.replace("%", "%%"))
    script_directory(loaded)  # fail here, clearly, rather than deep in a command
    return loaded


def script_directory(config: Config) -> ScriptDirectory:
    """Return the script directory of ``config``, or raise :class:`MigrationsNotFound`."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory.from_config(config)
    except CommandError as exc:
        where = config.config_file_name or "the config"
        raise MigrationsNotFound(f"{where}: {exc}.", hint=CONFIG_HINT) from None


def resolve_revisions(config: Config, spec: str) -> tuple[Script, ...]:
    """Return the revisions ``spec`` names (``head``, an id or prefix, ``base``: none)."""
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    script = script_directory(config)
    try:
        found = script.get_revisions(spec)
    except (CommandError, RevisionError) as exc:
        raise RevisionNotFound(
            f"no revision {spec!r}: {exc}.",
            hint="See the revisions with `pgwarden migrations history`.",
        ) from None
    return tuple(rev for rev in found if rev is not None)


def _on_connect(dbapi_connection: Any, record: Any) -> None:
    settings = _SESSION.get(threading.get_ident())
    if not settings:
        return
    cursor = dbapi_connection.cursor()
    try:
        for name, value in settings.items():
            cursor.execute(f"SET {name} = '{value}'")  # names and integers of our own
    finally:
        cursor.close()
    dbapi_connection.commit()  # a SET rolled back with its transaction would be lost


@contextmanager
def session_settings(settings: dict[str, str]) -> Iterator[None]:
    """Give every connection this thread opens in the block these session settings."""
    global _listening
    with _LISTENING:
        if not _listening:
            event.listen(Pool, "connect", _on_connect)
            _listening = True
    ident = threading.get_ident()
    _SESSION[ident] = settings
    try:
        yield
    finally:
        _SESSION.pop(ident, None)


@contextmanager
def _logging_kept() -> Iterator[None]:
    """Undo what an env.py's ``fileConfig`` does to the loggers that existed before.

    ``fileConfig`` disables every existing logger and replaces the root's handlers: in
    a server process running a migration, that would silence the application's logs.
    """
    root = logging.getLogger()
    kept_root = (list(root.handlers), root.level)
    kept = {
        name: (logger.disabled, logger.level, list(logger.handlers), logger.propagate)
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    try:
        yield
    finally:
        root.handlers[:], root.level = kept_root[0], kept_root[1]
        for name, (disabled, level, handlers, propagate) in kept.items():
            logger = logging.getLogger(name)
            logger.disabled, logger.level, logger.propagate = disabled, level, propagate
            logger.handlers[:] = handlers


def run_command(
    config: Config, name: str, *args: Any, settings: dict[str, str] | None = None, **kwargs: Any
) -> str:
    """Run ``alembic.command.<name>`` and return what it printed (offline SQL, listings).

    A revision Alembic cannot resolve is a :class:`RevisionNotFound`; other errors of
    Alembic are :class:`MigrationFailed`; database errors pass through for the caller.
    """
    from alembic import command
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    buffer = io.StringIO()
    config.output_buffer = buffer
    try:
        with session_settings(settings or {}), _logging_kept():
            getattr(command, name)(config, *args, **kwargs)
    except RevisionError as exc:
        raise RevisionNotFound(
            f"{exc}.", hint="See the revisions with `pgwarden migrations history`."
        ) from None
    except CommandError as exc:
        if "Can't locate revision" in str(exc) or "No such revision" in str(exc):
            raise RevisionNotFound(
                f"{exc}.", hint="See the revisions with `pgwarden migrations history`."
            ) from None
        raise MigrationFailed(f"alembic {name}: {exc}.") from None
    return buffer.getvalue()


def offline_sql(config: Config, name: str, revisions: str) -> str:
    """Return the SQL ``alembic <name> <revisions> --sql`` prints, running nothing."""
    return run_command(config, name, revisions, sql=True)


def is_lock_timeout(exc: BaseException) -> bool:
    """Return whether ``exc`` (or what caused it) is PostgreSQL's lock timeout."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for attr in ("sqlstate", "pgcode"):
            if getattr(current, attr, None) == LOCK_NOT_AVAILABLE:
                return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return "lock timeout" in str(exc)
