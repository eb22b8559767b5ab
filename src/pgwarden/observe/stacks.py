"""Stacks captured cheaply (code objects and offsets) and shown readably later.

The pool monitor records, for each connection it sees checked out, the stack that took
it; it must cost little, so frames are kept as code objects and instruction offsets and
turned into lines only when a held connection is reported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any

from pgwarden.observe.callsite import CallSite, is_library_file

try:
    import greenlet
except ImportError:  # pragma: no cover - greenlet comes with sqlalchemy[asyncio]
    greenlet = None

__all__ = ["HeldConnection", "StackFrame", "awaiting_frame", "held_connection", "stack_frame"]

StackFrame = tuple[str, int, str]
"""One frame of a stack: file name, line number, function name."""


@dataclass(frozen=True)
class HeldConnection:
    """A connection checked out of the pool: for how long, by whom, from where."""

    age_seconds: float
    stack: tuple[StackFrame, ...]  # outermost first, as in a traceback
    thread: str

    @property
    def call_site(self) -> str | None:
        """Return ``path:line`` of the innermost application frame that took it."""
        for filename, lineno, function in reversed(self.stack):
            if not is_library_file(filename):
                return CallSite(filename, lineno, function).location
        return None

    def format_stack(self) -> str:
        """Return the stack as indented lines, application frames marked with ``>``.

        Runs of library frames away from application code are folded into one line.
        """
        frames = self.stack
        app = [not is_library_file(filename) for filename, _, _ in frames]
        shown = [
            app[i] or (i > 0 and app[i - 1]) or (i + 1 < len(frames) and app[i + 1])
            for i in range(len(frames))
        ]
        if not any(app):
            shown = [True] * len(frames)
        lines: list[str] = []
        folded = 0
        for (filename, lineno, function), mine, show in zip(frames, app, shown, strict=True):
            if not show:
                folded += 1
                continue
            if folded:
                lines.append(f"    ... {folded} library frame{'s' if folded > 1 else ''}")
                folded = 0
            mark = "  > " if mine else "    "
            lines.append(f"{mark}{_display(filename)}:{lineno} in {function}")
        if folded:
            lines.append(f"    ... {folded} library frame{'s' if folded > 1 else ''}")
        return "\n".join(lines)


def _display(filename: str) -> str:
    """Return ``filename`` inside its package directory, or relative to the working one."""
    for marker in ("site-packages/", "dist-packages/"):
        _, found, tail = filename.rpartition(marker)
        if found:
            return tail
    try:
        relative = os.path.relpath(filename)
    except ValueError:
        return filename
    return filename if relative.startswith("..") else relative


def awaiting_frame(inner: Any) -> tuple[Any, FrameType | None]:
    """Return the greenlet outside ``inner`` (default: the current one) and its frame.

    Inside SQLAlchemy's async bridge a greenlet's stack ends in library code; the
    application's coroutine is suspended on the parent greenlet.
    """
    if greenlet is None:
        return None, None
    parent = (inner or greenlet.getcurrent()).parent
    if parent is None:
        return None, None
    frame: FrameType | None = parent.gr_frame
    return parent, frame


def held_connection(now: float, entry: tuple[float, list[Any], str]) -> HeldConnection:
    taken, stack, thread = entry
    frames = [stack_frame(stack[i], stack[i + 1]) for i in range(len(stack) - 2, -1, -2)]
    return HeldConnection(age_seconds=now - taken, stack=tuple(frames), thread=thread)


def stack_frame(code: CodeType, offset: int) -> StackFrame:
    line = code.co_firstlineno
    for start, end, number in code.co_lines():
        if start <= offset < end and number is not None:
            line = number
            break
    return (code.co_filename, line, code.co_name)
