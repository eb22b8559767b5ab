"""The system user that runs PostgreSQL when pgwarden runs as root (PostgreSQL refuses root)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from pgwarden.errors import ServerError

__all__ = ["SERVICE_USER", "can_run", "hand_over", "service_user"]

SERVICE_USER = "pgwarden"


def service_user() -> str | None:
    """Return the user to run PostgreSQL as when we are root, creating it if needed."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        _create()
    return SERVICE_USER


def _create() -> None:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    result = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home",
         "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", SERVICE_USER],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0 and result.returncode != 9:  # 9: created meanwhile
        raise ServerError(
            f"cannot create the system user {SERVICE_USER!r} to run PostgreSQL as: "
            f"{result.stderr.strip()}",
            hint="PostgreSQL refuses to run as root. Create the user yourself "
            f"(useradd --system {SERVICE_USER}) or run pgwarden as an ordinary user.",
        )


def hand_over(paths: Iterable[Path], user: str) -> None:
    """Make ``user`` (and its group) the owner of each of ``paths``, symlinks themselves."""
    entry = pwd.getpwnam(user)
    for path in paths:
        os.lchown(path, entry.pw_uid, entry.pw_gid)


def can_run(user: str, args: Sequence[str]) -> bool:
    """Return whether ``args`` runs and succeeds as ``user`` (root only)."""
    try:
        result = subprocess.run(
            list(args), user=user, cwd="/", capture_output=True, timeout=30, check=False
        )
    except OSError:  # the program cannot even be reached
        return False
    return result.returncode == 0
