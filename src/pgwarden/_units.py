"""Read and write sizes and durations the way people and PostgreSQL write them.

Sizes use units of 1024, as PostgreSQL's ``pg_size_pretty`` and its settings do:
``format_size(1536)`` is ``2 kB`` and ``parse_size("1GB")`` is ``1024**3``; the
``KiB``/``MiB`` spellings mean the same. Durations are ``90s``, ``5 min``, ``24h``,
``7d`` or ``2w``.
"""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["format_duration", "format_size", "parse_duration", "parse_size"]

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:([kmgt]?)(?:i?b)?)?\s*", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d|w)?\s*")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def format_size(size_bytes: float) -> str:
    """Return a byte count the way people read it: ``512 bytes``, ``12 MB``, ``-3 GB``."""
    sign = "-" if size_bytes < 0 else ""
    size = float(abs(size_bytes))
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1024:
            return f"{sign}{size:.0f} {unit}"
        size /= 1024
    return f"{sign}{size:.0f} TB"


def parse_size(text: str) -> int:
    """Return the bytes of ``1024``, ``64kB``, ``1.5GB``, ``8MiB`` or ``16M``.

    Raises :class:`ValueError` for anything else; callers say what they expected.
    """
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size")
    return int(float(match[1]) * _SIZE_UNITS[(match[2] or "").lower()])


def format_duration(seconds: float, *, exact: bool = False) -> str:
    """Return ``seconds`` in its largest unit, rounded: ``3 h``, ``5 min``, ``12 s``.

    ``exact`` writes the largest unit that divides the whole seconds, in the form
    :func:`parse_duration` reads back: ``7d``, ``90min``, ``45s``.
    """
    if exact:
        whole = int(seconds)
        for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
            if whole and whole % size == 0:
                return f"{whole // size}{unit}"
        return f"{whole}s"
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def parse_duration(text: str, *, unit: str = "s") -> timedelta:
    """Return the span of ``90s``, ``5 min``, ``500ms``, ``24h``, ``7d``, ``2w``.

    A bare number is in ``unit``. Raises :class:`ValueError` for anything else.
    """
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration")
    return timedelta(seconds=float(match[1]) * _SECONDS[match[2] or unit])
