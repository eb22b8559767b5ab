"""Watch an engine's connection pool: how full it is, who waits, and who holds too long.

:func:`pool_status` reads any engine's pool. A :class:`PoolMonitor` adds what the pool
does not count: time spent waiting for a connection, and for each connection checked
out, when and by which stack it was taken, so that one held past ``leak_seconds`` is
logged (once) with the lines of code that took it.

Pool events have no "before checkout", so the wait cannot be seen through them; the
monitor wraps the ``connect`` method of that one pool instance instead (the engine
calls ``pool.connect()`` for every checkout) and puts it back on :meth:`close`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import weakref
from dataclasses import dataclass
from time import perf_counter
from types import FrameType, TracebackType
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import Pool, QueuePool

from pgwarden.observe.stacks import HeldConnection, StackFrame, awaiting_frame, held_connection

__all__ = ["HeldConnection", "PoolMonitor", "PoolStatus", "StackFrame", "pool_status"]

log = logging.getLogger("pgwarden.observe.pool")

_INFINITY = float("inf")
_monitors: weakref.WeakKeyDictionary[Engine, weakref.ref[PoolMonitor]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class PoolStatus:
    """How an engine's pool stands now; the wait and held figures need a monitor.

    ``overflow`` is the number of connections open beyond ``size`` (never negative);
    ``max_overflow`` is -1 when the pool sets no limit. ``waits`` counts the checkouts
    that found the pool at its limit and had to wait for a connection to come back,
    ``wait_seconds_total`` and ``longest_wait_seconds`` their time (a wait that ends in
    ``pool_timeout`` counts too).
    """

    size: int
    checked_out: int
    checked_in: int
    overflow: int
    max_overflow: int
    waits: int = 0
    wait_seconds_total: float = 0.0
    longest_wait_seconds: float = 0.0
    longest_held_seconds: float = 0.0


def _sync(engine: Engine | AsyncEngine) -> Engine:
    return engine.sync_engine if isinstance(engine, AsyncEngine) else engine


def pool_status(engine: Engine | AsyncEngine) -> PoolStatus:
    """Return how ``engine``'s pool stands; any engine, sync or async, any pool class.

    Pool sizes come from the pool itself (a pool without a size, ``NullPool`` say,
    reports 0); the wait and held figures come from the engine's :class:`PoolMonitor`
    when it has one, else they are 0.
    """
    target = _sync(engine)
    ref = _monitors.get(target)
    monitor = ref() if ref is not None else None
    if monitor is not None and not monitor.closed:
        return monitor.status()
    return _pool_figures(target.pool, None)


def _pool_figures(pool: Pool, held: int | None, **extra: Any) -> PoolStatus:
    if isinstance(pool, QueuePool):
        return PoolStatus(
            size=pool.size(),
            checked_out=pool.checkedout(),
            checked_in=pool.checkedin(),
            overflow=max(0, pool.overflow()),
            max_overflow=_max_overflow(pool),
            **extra,
        )
    return PoolStatus(
        size=0, checked_out=held or 0, checked_in=0, overflow=0, max_overflow=-1, **extra
    )


def _max_overflow(pool: QueuePool) -> int:
    # QueuePool has no public accessor for it; -1 (no limit) when it cannot be read.
    value = getattr(pool, "_max_overflow", -1)
    return value if isinstance(value, int) else -1


class PoolMonitor:
    """Track every checkout of ``engine``'s pool, its wait and who holds the connection.

    For each checkout it notes the time, the thread (and asyncio task) and the stack:
    at most ``stack_depth`` frames as code objects and instruction offsets, turned into
    file and line only when a report needs them (a checkout and checkin cost about
    5 µs, plus some 0.13 µs a frame of stack). A connection held ``leak_seconds`` or
    more is logged once as a WARNING on ``pgwarden.observe.pool`` with that stack; the
    check runs at each checkout (a timestamp comparison until something is due), on
    :meth:`check_leaks`, and every ``check_interval`` seconds from a daemon thread when
    that is set.

    Under SQLAlchemy's asyncio layer the stack continues into the awaiting coroutine.
    :meth:`close` removes every listener and the wrapper; it is idempotent.
    """

    def __init__(
        self,
        engine: Engine | AsyncEngine,
        *,
        leak_seconds: float | None = 30.0,
        check_interval: float | None = None,
        stack_depth: int = 40,
    ) -> None:
        self.engine = _sync(engine)
        self.leak_seconds = leak_seconds
        self.stack_depth = stack_depth
        self.closed = False
        self._leak = _INFINITY if leak_seconds is None else float(leak_seconds)
        self._next_check = _INFINITY
        self._held: dict[Any, tuple[float, list[Any], str]] = {}
        self._reported: dict[Any, float] = {}
        self._checking = threading.Lock()
        self._counting = threading.Lock()
        self._waits = 0
        self._wait_total = 0.0
        self._wait_longest = 0.0
        self._wrapped: tuple[Pool, Any, bool, Any] | None = None
        self._pool = self._listened = self.engine.pool
        self._following = threading.Lock()
        # Listeners on a pool move to the pool that engine.dispose() puts in its place.
        for name, listener in self._listeners():
            event.listen(self._listened, name, listener)
        self._wrap(self._pool)
        _monitors[self.engine] = weakref.ref(self)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if check_interval is not None:
            # The thread holds the monitor weakly: an engine dropped without close() is
            # collected, and its watcher ends at its next wake-up.
            self._thread = threading.Thread(
                target=_run,
                args=(weakref.ref(self), self._stop, check_interval),
                name="pgwarden-pool-monitor",
                daemon=True,
            )
            self._thread.start()

    def __enter__(self) -> PoolMonitor:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _listeners(self) -> list[tuple[str, Any]]:
        return [
            ("checkout", self._on_checkout),
            ("checkin", self._on_checkin),
            ("detach", self._on_checkin),
        ]

    # -- the per-checkout path: keep it lean -------------------------------------

    def _on_checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        frame: FrameType | None = sys._getframe(1)
        stack: list[Any] = []
        append = stack.append
        outer = None
        for _ in range(self.stack_depth):
            if frame is None:
                outer, frame = awaiting_frame(outer)
                if frame is None:
                    break
            append(frame.f_code)
            append(frame.f_lasti)
            frame = frame.f_back
        thread = threading.current_thread().name
        if asyncio._get_running_loop() is not None:
            task = asyncio.current_task()
            if task is not None:
                thread = f"{thread} (task {task.get_name()})"
        now = perf_counter()
        self._held[record] = (now, stack, thread)
        if self.engine.pool is not self._pool:
            self._follow()
        if now >= self._next_check:
            if self._checking.acquire(blocking=False):
                try:
                    self._check(now)
                except Exception:  # a failed report must not fail the checkout
                    log.exception("pool leak check failed")
                finally:
                    self._checking.release()
        elif now + self._leak < self._next_check:
            self._next_check = now + self._leak

    def _on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        self._held.pop(record, None)

    def _wrap(self, pool: Pool) -> None:
        if not isinstance(pool, QueuePool) or _max_overflow(pool) < 0:
            return  # no limit, so no waiting: leave the pool's connect alone
        original = pool.connect
        own = "connect" in vars(pool)
        limit = _max_overflow(pool)
        checkedin = pool.checkedin
        overflow = pool.overflow
        waited = self._waited
        monitor = self

        def connect() -> Any:
            # At the limit when asked: no idle connection and no overflow left, so the
            # caller waits for another to come back (or for pool_timeout).
            if monitor.closed or checkedin() or overflow() < limit:
                return original()
            started = perf_counter()
            try:
                return original()
            finally:
                waited(perf_counter() - started)

        pool.connect = connect  # type: ignore[method-assign]
        self._wrapped = (pool, original, own, connect)

    def _waited(self, seconds: float) -> None:
        with self._counting:
            self._waits += 1
            self._wait_total += seconds
            self._wait_longest = max(self._wait_longest, seconds)

    def _unwrap(self) -> None:
        if self._wrapped is None:
            return
        pool, original, own, wrapper = self._wrapped
        self._wrapped = None
        if vars(pool).get("connect") is not wrapper:
            return  # wrapped again on top of ours; ours now passes through (closed)
        if own:
            pool.connect = original  # type: ignore[method-assign]
        else:
            del pool.connect

    def _follow(self) -> None:
        # engine.dispose() put a new pool in place: the listeners came along, the wrapper
        # must be redone. (Not through the engine_disposed event: any engine-level
        # listener makes every later statement of the engine check for events.)
        with self._following:
            if self.closed or self.engine.pool is self._pool:
                return
            self._unwrap()
            self._pool = self.engine.pool
            self._wrap(self._pool)

    # -- reading -----------------------------------------------------------------

    def status(self) -> PoolStatus:
        """Return the pool's figures with this monitor's waits and longest hold."""
        held = self._held.copy()
        now = perf_counter()
        longest = now - min(taken for taken, _, _ in held.values()) if held else 0.0
        return _pool_figures(
            self.engine.pool,
            len(held),
            waits=self._waits,
            wait_seconds_total=self._wait_total,
            longest_wait_seconds=self._wait_longest,
            longest_held_seconds=longest,
        )

    def held(self) -> list[HeldConnection]:
        """Return the connections checked out now, the longest-held first."""
        now = perf_counter()
        return sorted(
            (held_connection(now, entry) for entry in self._held.copy().values()),
            key=lambda held: -held.age_seconds,
        )

    def check_leaks(self) -> list[HeldConnection]:
        """Return the connections held ``leak_seconds`` or more; log the ones not yet logged.

        Each connection is logged once per checkout, as a WARNING on
        ``pgwarden.observe.pool`` with the stack that took it.
        """
        with self._checking:
            return self._check(perf_counter())

    def _check(self, now: float) -> list[HeldConnection]:
        held = self._held.copy()
        reported = {record: taken for record, taken in self._reported.items() if record in held}
        leaking: list[HeldConnection] = []
        next_check = _INFINITY
        for record, entry in held.items():
            taken = entry[0]
            if now - taken < self._leak:
                next_check = min(next_check, taken + self._leak)
                continue
            found = held_connection(now, entry)
            leaking.append(found)
            if reported.get(record) != taken:
                reported[record] = taken
                self._log_leak(found)
        self._reported = reported
        self._next_check = next_check
        return leaking

    def _log_leak(self, found: HeldConnection) -> None:
        site = found.call_site or "an unknown line"
        log.warning(
            "connection held %.1f s (leak_seconds %.1f) by %s, taken at %s\n"
            "stack that took it (most recent call last, > marks application code):\n%s",
            found.age_seconds,
            self._leak,
            found.thread,
            site,
            found.format_stack(),
            extra={
                "held_seconds": round(found.age_seconds, 3),
                "leak_seconds": self._leak,
                "holder": found.thread,
                "call_site": found.call_site,
            },
        )

    # -- ending ------------------------------------------------------------------

    def close(self) -> None:
        """Remove the listeners, the wrapper and the watcher thread; idempotent."""
        if self.closed:
            return
        self.closed = True
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        for name, listener in self._listeners():
            if event.contains(self._listened, name, listener):
                event.remove(self._listened, name, listener)
        with self._following:
            self._unwrap()
        ref = _monitors.get(self.engine)
        if ref is not None and ref() is self:
            del _monitors[self.engine]
        self._held.clear()
        self._reported.clear()


def _run(ref: weakref.ref[PoolMonitor], stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        monitor = ref()
        if monitor is None or monitor.closed:
            return
        try:
            monitor.check_leaks()
        except Exception:  # a report must never kill the watcher
            log.exception("pool leak check failed")
        del monitor
