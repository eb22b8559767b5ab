"""WAL file names: what PostgreSQL archives, checked strictly, and LSN arithmetic.

Names come from PostgreSQL's ``%f``, from command lines and from storage listings; the
last two are untrusted, so every name is matched in full against the four forms
PostgreSQL writes before it is used in a path or a key::

    000000010000000A000000FF          a segment: timeline, log, segment (24 hex digits)
    00000002.history                  a timeline history file
    000000010000000A000000FF.partial  the last, incomplete segment of a timeline
    000000010000000A000000FF.00000028.backup   a backup history file
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pgwarden.errors import UserError

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "WalName",
    "format_lsn",
    "parse_lsn",
    "parse_wal_name",
    "segment_name",
    "segment_of",
]

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
_SEGMENT = re.compile(r"(?P<tli>[0-9A-F]{8})(?P<log>[0-9A-F]{8})(?P<seg>[0-9A-F]{8})")
_FORMS = {
    "segment": re.compile(rf"{_SEGMENT.pattern}"),
    "partial": re.compile(rf"{_SEGMENT.pattern}\.partial"),
    "backup": re.compile(rf"{_SEGMENT.pattern}\.[0-9A-F]{{8}}\.backup"),
    "history": re.compile(r"(?P<tli>[0-9A-F]{8})\.history"),
}
_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")
_HINT = (
    "A WAL file name is 24 upper-case hex digits (000000010000000000000003), optionally "
    "with .partial, a backup history name (...00000003.00000028.backup) or a timeline "
    "history name (00000002.history)."
)


@dataclass(frozen=True, slots=True, order=True)
class WalName:
    """A checked WAL file name, ordered by timeline then position."""

    timeline: int
    log: int
    segment: int
    kind: str  # "segment", "partial", "backup" or "history"
    name: str

    def number(self, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
        """Return the segment's position on its timeline, as :func:`segment_of` counts."""
        return self.log * (0x1_0000_0000 // segment_size) + self.segment


def parse_wal_name(name: str) -> WalName:
    """Return ``name`` parsed, or raise :class:`UserError` if it is not a WAL file name."""
    if isinstance(name, str) and len(name) <= 64:
        for kind, pattern in _FORMS.items():
            match = pattern.fullmatch(name)
            if match is None:
                continue
            timeline = int(match["tli"], 16)
            if timeline == 0:
                break
            if kind == "history":
                return WalName(timeline, 0, 0, kind, name)
            return WalName(timeline, int(match["log"], 16), int(match["seg"], 16), kind, name)
    raise UserError(f"{str(name)[:80]!r} is not a WAL file name.", hint=_HINT)


def segment_name(timeline: int, number: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    """Return the name of segment ``number`` (as :func:`segment_of` counts) on ``timeline``."""
    per_log = 0x1_0000_0000 // segment_size
    return f"{timeline:08X}{number // per_log:08X}{number % per_log:08X}"


def segment_of(lsn: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """Return the number of the segment holding ``lsn``."""
    return lsn // segment_size


def parse_lsn(text: str) -> int:
    """Return the LSN ``X/Y`` as an integer; raise :class:`UserError` if malformed."""
    match = _LSN.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise UserError(
            f"{str(text)[:40]!r} is not an LSN.", hint="An LSN looks like 0/3000060 (hex/hex)."
        )
    return (int(match[1], 16) << 32) | int(match[2], 16)


def format_lsn(lsn: int) -> str:
    """Return ``lsn`` as PostgreSQL writes it, ``X/Y``."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"
