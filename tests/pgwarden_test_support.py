"""Helpers shared by the tests."""

from __future__ import annotations

from pathlib import Path


def line_of(path: str | Path, marker: str) -> int:
    """Return the number of the only line of ``path`` holding ``marker`` (besides lookups)."""
    lines = [
        number
        for number, text in enumerate(Path(path).read_text().splitlines(), start=1)
        if marker in text and "line_of(" not in text
    ]
    assert len(lines) == 1, f"{marker!r} is on lines {lines} of {path}"
    return lines[0]
