"""Read how far a running VACUUM, ANALYZE, VACUUM FULL or REINDEX has got.

PostgreSQL reports the progress of each maintenance command in a view of its own:
``pg_stat_progress_vacuum``, ``pg_stat_progress_analyze`` (13+),
``pg_stat_progress_cluster`` (which ``VACUUM FULL`` reports to) and
``pg_stat_progress_create_index`` (which ``REINDEX`` reports to). :func:`progress_sample`
reads all four for one backend and returns what it finds as one :class:`Progress`;
:func:`watch_progress` does so every ``interval`` seconds::

    stop = threading.Event()
    with engine.connect() as watcher:
        for sample in watch_progress(watcher, pid, stop, interval=0.5):
            print(sample.command, sample.relation, sample.phase, sample.done, sample.total)

The watching connection must not be the one running the command, and should be in
autocommit: a backend's view of others' progress is fixed for the length of its
transaction.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

__all__ = ["Progress", "progress_sample", "watch_progress"]

log = logging.getLogger(__name__)

# One row per view; at most one of them has a row for a backend at a time. "done" and
# "total" are the figures that move in the current phase.
PROGRESS = text(
    """
SELECT 'VACUUM' AS command,
       relid::regclass::text AS relation,
       phase,
       CASE WHEN phase = 'vacuuming heap' THEN heap_blks_vacuumed
            ELSE heap_blks_scanned END AS done,
       heap_blks_total AS total,
       'heap blocks' AS unit
FROM pg_stat_progress_vacuum
WHERE pid = :pid
UNION ALL
SELECT 'ANALYZE',
       relid::regclass::text,
       phase,
       sample_blks_scanned,
       sample_blks_total,
       'sample blocks'
FROM pg_stat_progress_analyze
WHERE pid = :pid
UNION ALL
SELECT command,
       relid::regclass::text,
       phase,
       heap_blks_scanned,
       heap_blks_total,
       'heap blocks'
FROM pg_stat_progress_cluster
WHERE pid = :pid
UNION ALL
SELECT command,
       relid::regclass::text,
       phase,
       CASE WHEN blocks_total > 0 THEN blocks_done
            WHEN tuples_total > 0 THEN tuples_done
            ELSE lockers_done END,
       CASE WHEN blocks_total > 0 THEN blocks_total
            WHEN tuples_total > 0 THEN tuples_total
            ELSE lockers_total END,
       CASE WHEN blocks_total > 0 THEN 'blocks'
            WHEN tuples_total > 0 THEN 'tuples'
            ELSE 'lockers waited for' END
FROM pg_stat_progress_create_index
WHERE pid = :pid
"""
)


@dataclass(frozen=True)
class Progress:
    """One reading of a maintenance command's progress.

    ``command`` is what the server calls it (``VACUUM``, ``ANALYZE``, ``VACUUM FULL``,
    ``REINDEX CONCURRENTLY``); ``phase`` is the server's name for the current phase
    (``scanning heap``, ``vacuuming indexes``); ``done`` of ``total`` ``unit`` is the
    work of that phase, and ``total`` is 0 in a phase that has no measure.
    """

    pid: int
    command: str
    relation: str
    phase: str
    done: int
    total: int
    unit: str

    @property
    def fraction(self) -> float | None:
        """Return ``done / total`` between 0 and 1, or ``None`` when the phase has no total."""
        return min(self.done / self.total, 1.0) if self.total > 0 else None


def progress_sample(conn: Connection, pid: int) -> Progress | None:
    """Return the progress of backend ``pid``'s maintenance command, or ``None`` if it runs none.

    Roles without ``pg_read_all_stats`` (``pg_monitor``) see only their own backends.
    """
    row = conn.execute(PROGRESS, {"pid": pid}).first()
    if row is None:
        return None
    return Progress(
        pid=pid,
        command=row.command,
        relation=row.relation,
        phase=row.phase,
        done=int(row.done or 0),
        total=int(row.total or 0),
        unit=row.unit,
    )


def watch_progress(
    conn: Connection, pid: int, stop: threading.Event, *, interval: float = 0.5
) -> Iterator[Progress]:
    """Yield backend ``pid``'s progress every ``interval`` seconds until ``stop`` is set.

    A reading with no command running (not yet started, or between two) yields nothing.
    """
    while not stop.is_set():
        sample = progress_sample(conn, pid)
        if sample is not None:
            yield sample
        stop.wait(interval)


class ProgressWatcher:
    """Call ``on_progress`` with a backend's progress, from a thread of its own.

    A context manager for a whole run: the thread opens one connection from ``engine``
    on entry and closes it on exit. Samples are delivered only inside :meth:`watching`,
    and none after it ends, so a sample never trails the end of its statement.
    Progress is best effort: a failure to read or deliver it is logged, never raised,
    so it cannot fail the work it watches.
    """

    def __init__(
        self,
        engine: Engine,
        pid: int,
        on_progress: Callable[[Progress], None],
        *,
        interval: float = 0.5,
    ) -> None:
        self._engine = engine
        self._pid = pid
        self._on_progress = on_progress
        self._interval = interval
        self._stop = threading.Event()
        self._delivering = threading.Lock()
        self._active = False
        self._thread = threading.Thread(target=self._run, name="pgwarden-progress", daemon=True)

    def __enter__(self) -> ProgressWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    @contextmanager
    def watching(self) -> Iterator[None]:
        """Deliver samples while the block runs, and none once it has ended."""
        self._active = True
        try:
            yield
        finally:
            with self._delivering:  # wait out a delivery under way
                self._active = False

    def _run(self) -> None:
        try:
            with self._engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT")
                for sample in watch_progress(conn, self._pid, self._stop, interval=self._interval):
                    with self._delivering:
                        if self._active:
                            self._on_progress(sample)
        except Exception:
            log.warning("cannot read the progress of backend %s", self._pid, exc_info=True)
