"""Report how far a backup, a restore or a verify has got, through a callback.

Each long step calls ``on_progress(BackupProgress(...))`` as bytes move: ``dump`` (pg_dump's
output, streamed into the storage), ``upload`` (a staged directory's files), ``check``
(reading a backup back to prove its checksums), ``download`` (staging a backup
locally) and ``restore`` (bytes handed to pg_restore). The CLI draws a bar per phase;
a library caller may log, or ignore them (the default).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

__all__ = ["BackupProgress", "ProgressCallback", "counted", "no_progress"]


@dataclass(frozen=True, slots=True)
class BackupProgress:
    """One reading: ``done`` of ``total`` bytes (``total`` None when unknown) of a phase."""

    phase: str
    done: int
    total: int | None = None
    finished: bool = False


ProgressCallback = Callable[[BackupProgress], None]


def no_progress(progress: BackupProgress) -> None:
    """Ignore a progress reading."""


def counted(
    chunks: Iterable[bytes],
    phase: str,
    on_progress: ProgressCallback,
    *,
    total: int | None = None,
    start: int = 0,
    interval: float = 0.1,
) -> Iterator[bytes]:
    """Yield ``chunks`` unchanged, reporting the bytes passed at most every ``interval`` s."""
    done = start
    last = 0.0
    on_progress(BackupProgress(phase, done, total))
    for chunk in chunks:
        done += len(chunk)
        now = time.monotonic()
        if now - last >= interval:
            last = now
            on_progress(BackupProgress(phase, done, total))
        yield chunk
    on_progress(BackupProgress(phase, done, total, finished=True))
