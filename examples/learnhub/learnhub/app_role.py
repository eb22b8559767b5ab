"""The database role learnhub's API connects as: ``learnhub_app``, which owns nothing.

Two connections, as production apps have them. Migrations and seeding run as the owner
of the tables (``DATABASE_URL``, ``--database-url``). The API runs as ``learnhub_app``, a
login role that the migrations create and grant only what the API needs, so the
row-level security on ``content`` and ``comments`` applies to every query it sends: a
superuser, a role with ``BYPASSRLS`` or a table's owner would escape it.

- ``LEARNHUB_APP_URL`` is the API's own URL, all a production API should be given.
- Without it, the API's URL is ``DATABASE_URL`` with the user and password replaced:
  the role is ``LEARNHUB_APP_ROLE`` (default ``learnhub_app``), its password
  ``LEARNHUB_APP_PASSWORD``, else the one kept in a file beside the embedded server's
  password file (``LEARNHUB_APP_PASSWORD_FILE`` to choose it), made on first use,
  mode 0600. The password is never printed, logged or put on a command line.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path

from sqlalchemy.engine import URL

from pgwarden.config import load_settings
from pgwarden.db.embedded import default_data_dir
from pgwarden.errors import ConfigError
from pgwarden.urls import parse_database_url

__all__ = [
    "DEFAULT_ROLE",
    "app_database_url",
    "app_password",
    "app_url",
    "password_file",
    "role_name",
]

DEFAULT_ROLE = "learnhub_app"
# A plain lower-case name: it is written into migrations' SQL without quotes.
_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def role_name() -> str:
    """Return the API's role: ``LEARNHUB_APP_ROLE``, else ``learnhub_app``."""
    name = os.environ.get("LEARNHUB_APP_ROLE") or DEFAULT_ROLE
    if not _ROLE_NAME.fullmatch(name):
        raise ConfigError(
            f"LEARNHUB_APP_ROLE={name!r} is not a plain role name.",
            hint="Use lower-case letters, digits and _, starting with a letter or _.",
        )
    return name


def password_file() -> Path:
    """Return the file the generated password is kept in (``LEARNHUB_APP_PASSWORD_FILE``)."""
    configured = os.environ.get("LEARNHUB_APP_PASSWORD_FILE")
    if configured:
        return Path(configured)
    data_dir = load_settings().data_dir or default_data_dir()
    return data_dir.with_name(f"{data_dir.name}.{role_name()}.password")


def app_password(*, create: bool = False) -> str | None:
    """Return the API role's password: ``LEARNHUB_APP_PASSWORD``, else the password file.

    With ``create``, a missing file is made with a new random password (mode 0600,
    never replacing a file another process made first); without it, ``None`` means
    there is none yet.
    """
    configured = os.environ.get("LEARNHUB_APP_PASSWORD")
    if configured:
        return configured
    path = password_file()
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        if not create:
            return None
    password = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made meanwhile by another process: theirs stands
        return path.read_text().strip() or None
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return password


def app_url(owner_url: str | URL, *, password: str | None = None) -> str:
    """Return ``owner_url`` with the API's role and password in place of the owner's.

    The password is ``password``, else :func:`app_password`; with neither, the
    migrations have not given the role one here, and that is a ``ConfigError``.
    """
    password = password or app_password()
    if password is None:
        raise ConfigError(
            f"no password for learnhub's API role {role_name()}.",
            hint=f"Set LEARNHUB_APP_PASSWORD, or run the migrations (python -m learnhub "
            f"migrate), which keep a new one in {password_file()}.",
        )
    url = parse_database_url(owner_url).set(username=role_name(), password=password)
    return url.render_as_string(hide_password=False)


def app_database_url() -> str:
    """Return the URL the API connects with: ``LEARNHUB_APP_URL``, else from DATABASE_URL."""
    configured = os.environ.get("LEARNHUB_APP_URL")
    if configured:
        return configured
    owner = os.environ.get("DATABASE_URL")
    if not owner:
        raise ConfigError(
            "learnhub's API has no database URL.",
            hint="Set LEARNHUB_APP_URL to the API's own URL (role learnhub_app), or "
            "DATABASE_URL to the owner's, which the API's is made from.",
        )
    return app_url(owner)
