"""Find the line of application code that caused a statement, skipping library frames.

A frame is library code when its file lies in the standard library, in an installed
package (site-packages), or in pgwarden itself; everything else is the application's.
Under SQLAlchemy's asyncio layer, statements run inside a greenlet whose stack holds
only library frames; the application's coroutine is then found on the parent greenlet,
suspended where it awaited.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

__all__ = ["CallSite", "add_library_paths", "find_call_site", "is_library_file"]

try:
    import greenlet
except ImportError:  # pragma: no cover - greenlet comes with sqlalchemy[asyncio]
    greenlet = None


@dataclass(frozen=True, slots=True, eq=False)
class CallSite:
    """A line of application code.

    Call sites are interned (one object per file, line and function), so they compare and
    hash by identity: cheap as dictionary keys on the per-statement path.
    """

    filename: str
    lineno: int
    function: str

    @property
    def location(self) -> str:
        """Return ``path:line``, the path relative to the working directory when inside it."""
        return f"{_display_path(self.filename)}:{self.lineno}"

    def __str__(self) -> str:
        return f"{self.location} in {self.function}"


def _display_path(filename: str) -> str:
    try:
        relative = os.path.relpath(filename)
    except ValueError:
        return filename
    return filename if relative.startswith("..") else relative


def _default_library_paths() -> list[str]:
    keys = ("stdlib", "platstdlib", "purelib", "platlib", "scripts")  # scripts: bin/pytest &c.
    paths = {sysconfig.get_paths()[key] for key in keys}
    paths.add(str(Path(__file__).resolve().parents[1]))  # pgwarden itself
    paths.update(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
    return sorted(os.path.realpath(p) for p in paths if p)


_library_paths: tuple[str, ...] = tuple(_default_library_paths())
_is_library: dict[str, bool] = {}


def add_library_paths(paths: Iterable[str | Path]) -> None:
    """Treat files under ``paths`` as library code too (an in-house framework, say)."""
    global _library_paths
    extra = tuple(os.path.realpath(p) for p in paths)
    _library_paths = tuple(sorted(set(_library_paths + extra)))
    _is_library.clear()


def is_library_file(filename: str) -> bool:
    """Return whether ``filename`` belongs to a library rather than to the application."""
    known = _is_library.get(filename)
    if known is None:
        if filename.startswith("<"):
            known = True  # <frozen ...>, <string>: nothing a user can open
        else:
            real = os.path.realpath(filename)
            known = any(real == p or real.startswith(p + os.sep) for p in _library_paths)
        _is_library[filename] = known
    return known


def _first_application_frame(frame: FrameType | None) -> FrameType | None:
    cache = _is_library
    while frame is not None:
        filename = frame.f_code.co_filename
        library = cache.get(filename)
        if library is None:
            library = is_library_file(filename)
        if not library:
            return frame
        frame = frame.f_back
    return None


def find_call_site(frame: FrameType | None = None) -> CallSite | None:
    """Return the innermost application line on the current stack, or None.

    ``frame`` is where to start (default: the caller's frame).
    """
    found = _first_application_frame(frame or sys._getframe(1))
    if found is None and greenlet is not None:
        # Inside SQLAlchemy's async bridge: look where the awaiting coroutine stands.
        parent = greenlet.getcurrent().parent
        while found is None and parent is not None:
            found = _first_application_frame(parent.gr_frame)
            parent = parent.parent
    if found is None:
        return None
    key = (found.f_code, found.f_lineno)
    site = _sites.get(key)
    if site is None:
        if len(_sites) >= _SITES_LIMIT:
            _sites.clear()
        code = found.f_code
        site = _interned.setdefault(
            (code.co_filename, found.f_lineno, code.co_name),
            CallSite(code.co_filename, found.f_lineno, code.co_name),
        )
        _sites[key] = site
    return site


_SITES_LIMIT = 65536
_sites: dict[tuple[object, int], CallSite] = {}
_interned: dict[tuple[str, int, str], CallSite] = {}
