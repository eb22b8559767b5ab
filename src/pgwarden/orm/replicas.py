"""Send reads to streaming replicas and everything else to the primary.

A :class:`ReplicaSet` holds the primary's engine and the replicas', and knows which
replica may serve a read now: it asks each standby how far behind it is (at most once
per ``check_interval``), skips one whose lag is over ``max_lag``, and sets aside for
``retry_after`` one that could not be reached. :class:`~pgwarden.orm.RoutingSession`
(sync) and :func:`async_routing_sessionmaker` (async) route each statement with it:

- to the primary: flushes, INSERT/UPDATE/DELETE, ``SELECT ... FOR UPDATE``, text SQL
  (it may write) unless marked ``execution_options(route="replica")``, anything marked
  ``route="primary"``, anything inside :func:`use_primary`, and every read after a
  write in the same unit of work;
- to one replica per transaction otherwise, or to the primary when none is usable.

A unit of work is a :func:`routing_scope` (an HTTP request under
:class:`ReplicaScopeMiddleware` or the FastAPI dependency :func:`routing_scope_dependency`),
else the session. With ``lsn_read_your_writes=True`` a unit that wrote goes back to a
replica once that replica has replayed the write (``pg_last_wal_replay_lsn()`` past the
primary's ``pg_current_wal_lsn()`` taken at commit) instead of staying on the primary.
No write is ever sent to a replica: routing only ever sends reads there.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from pgwarden._units import parse_duration
from pgwarden.config import Settings, load_settings
from pgwarden.errors import ConfigError, UserError
from pgwarden.orm import _replica_health as health
from pgwarden.orm.replica_scope import (
    ReplicaScopeMiddleware,
    WorkUnit,
    current_unit,
    routing_scope,
    routing_scope_dependency,
    use_primary,
)
from pgwarden.urls import redact_text, redact_url

__all__ = [
    "ReplicaScopeMiddleware",
    "ReplicaSet",
    "ReplicaStatus",
    "RoutingStats",
    "WorkUnit",
    "current_unit",
    "routing_scope",
    "routing_scope_dependency",
    "use_primary",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplicaStatus:
    """What pgwarden last learnt of one replica."""

    url: str  # redacted
    usable: bool
    reason: str | None  # why it is not usable
    lag_seconds: float | None
    replay_lsn: str | None
    paused: bool  # replay paused (pg_wal_replay_pause)
    in_recovery: bool | None  # False: not a standby (promoted, or a logical replica)
    age_seconds: float  # since it was asked


@dataclass(frozen=True)
class RoutingStats:
    """Counts of routing decisions since the set was made.

    ``to_primary`` and ``to_replica`` count statements; ``fallbacks`` and the skips
    count choices of a replica, made once per transaction.
    """

    to_primary: int
    to_replica: int
    writes: int
    fallbacks: int  # transactions whose reads went to the primary: no replica usable
    skipped_lag: int
    skipped_down: int
    skipped_behind: int  # not yet past this unit's last write (lsn_read_your_writes)
    replica_failures: int


@dataclass
class _State:
    checked: float = float("-inf")
    failed_at: float | None = None
    error: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)


class ReplicaSet:
    """The primary and its replicas, and which replica may serve a read right now."""

    def __init__(
        self,
        primary: Engine | AsyncEngine,
        replicas: Sequence[Engine | AsyncEngine] = (),
        *,
        max_lag: float | str | timedelta = 10.0,
        check_interval: float | str | timedelta = 1.0,
        retry_after: float | str | timedelta = 5.0,
        lsn_read_your_writes: bool = False,
    ) -> None:
        """Route between ``primary`` and ``replicas`` (sync or async engines, not mixed).

        Durations are seconds, text such as ``"500ms"``, or timedeltas. ``max_lag`` is
        how far behind a replica may be and still serve reads; ``check_interval`` how
        long what a replica said of its lag is trusted; ``retry_after`` how long a
        replica that failed is left alone.
        """
        self.is_async = isinstance(primary, AsyncEngine)
        if any(isinstance(engine, AsyncEngine) != self.is_async for engine in replicas):
            raise ConfigError(
                "the primary and the replicas mix sync and async engines.",
                hint="Give all sync engines (for Session) or all async ones (AsyncSession).",
            )
        self._engines = (primary, *replicas)
        self.primary = _sync(primary)
        self.replicas = tuple(_sync(engine) for engine in replicas)
        self.max_lag = _seconds(max_lag, "max_lag")
        self.check_interval = _seconds(check_interval, "check_interval")
        self.retry_after = _seconds(retry_after, "retry_after")
        self.lsn_read_your_writes = lsn_read_your_writes
        self._states = {engine: _State() for engine in self.replicas}
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._counts = dict.fromkeys(RoutingStats.__dataclass_fields__, 0)

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, *, use_async: bool = False, **options: Any
    ) -> ReplicaSet:
        """Build the set from ``DATABASE_URL`` and ``DATABASE_REPLICA_URL`` (one or more).

        ``options`` go to :class:`ReplicaSet`; engines are made by pgwarden's factory.
        """
        from pgwarden.db.engines import create_async_engine, create_engine

        settings = settings or load_settings()
        make: Any = create_async_engine if use_async else create_engine
        primary = make(None, settings=settings)
        replicas = [make(url, settings=settings) for url in settings.database_replica_urls()]
        return cls(primary, replicas, **options)

    # -- choosing ------------------------------------------------------------------

    def choose(self, *, min_lsn: int | None = None, skip: Sequence[Engine] = ()) -> Engine:
        """Return a replica that may serve a read now, else the primary.

        ``min_lsn`` asks for one that has replayed at least that far (the unit's last
        write); ``skip`` names replicas already tried. May ask a replica for its lag.
        """
        start = next(self._turn)
        count = len(self.replicas)
        for offset in range(count):
            engine = self.replicas[(start + offset) % count]
            if engine in skip:
                continue
            reason = self._unusable(engine, min_lsn)
            if reason is None:
                log.debug("read routed to replica %s", redact_url(engine.url))
                return engine
            log.debug("replica %s skipped: %s", redact_url(engine.url), reason)
        if count:
            self.count("fallbacks")
            log.debug("no replica usable: read routed to the primary")
        return self.primary

    def _unusable(self, engine: Engine, min_lsn: int | None) -> str | None:
        state = self._fresh(engine)
        if state.failed_at is not None:
            self.count("skipped_down")
            return f"unreachable: {state.error}"
        lag = state.facts.get("lag_seconds")
        if lag is None or lag > self.max_lag:
            self.count("skipped_lag")
            return "lag unknown" if lag is None else f"{lag:.1f} s behind"
        if min_lsn is not None and (state.facts.get("replay_lsn") or 0) < min_lsn:
            state = self._fresh(engine, force=True)  # it may have caught up since
            if state.failed_at is not None or (state.facts.get("replay_lsn") or 0) < min_lsn:
                self.count("skipped_behind")
                return "has not replayed this unit's last write yet"
        return None

    def _fresh(self, engine: Engine, *, force: bool = False) -> _State:
        state = self._states[engine]
        now = time.monotonic()
        if state.failed_at is not None and now - state.failed_at < self.retry_after:
            return state
        if not force and state.failed_at is None and now - state.checked < self.check_interval:
            return state
        try:
            facts = health.probe(engine)
        except (sa_exc.OperationalError, sa_exc.InterfaceError, OSError) as exc:
            self.mark_failed(engine, exc)
            return self._states[engine]
        if state.failed_at is not None:
            log.warning("replica %s is reachable again", redact_url(engine.url))
        self._states[engine] = _State(checked=time.monotonic(), facts=facts)
        return self._states[engine]

    def mark_failed(self, engine: Engine, exc: BaseException) -> None:
        """Set ``engine`` aside for ``retry_after``: it could not be reached."""
        detail = redact_text(str(getattr(exc, "orig", None) or exc)).strip()
        first = detail.splitlines()[0] if detail else type(exc).__name__
        with self._lock:
            was_up = self._states[engine].failed_at is None
            self._states[engine] = _State(failed_at=time.monotonic(), error=first)
            self._counts["replica_failures"] += 1
        if was_up:
            log.warning(
                "replica %s is unreachable, reads go elsewhere for %.0f s: %s",
                redact_url(engine.url),
                self.retry_after,
                first,
            )

    def is_replica(self, engine: object) -> bool:
        """Return whether ``engine`` is one of the replicas' engines."""
        return engine in self._states

    def current_lsn(self) -> int:
        """Return the primary's WAL write position now (taken after a unit's commit)."""
        return health.current_lsn(self.primary) or 0

    # -- reporting -----------------------------------------------------------------

    def count(self, name: str) -> None:
        """Add one to the count ``name`` of :class:`RoutingStats`."""
        with self._lock:
            self._counts[name] += 1

    def stats(self) -> RoutingStats:
        """Return the routing decisions counted so far."""
        with self._lock:
            return RoutingStats(**self._counts)

    def status(self, *, refresh: bool = True) -> list[ReplicaStatus]:
        """Return each replica's state, asking each one now unless ``refresh`` is False.

        On an async set, call it through ``await session.run_sync(...)`` or
        ``await conn.run_sync(...)``: asking a replica needs the greenlet bridge.
        """
        result = []
        for engine in self.replicas:
            state = self._fresh(engine, force=True) if refresh else self._states[engine]
            reason = self._reason(state)
            lag = state.facts.get("lag_seconds")
            result.append(
                ReplicaStatus(
                    url=redact_url(engine.url),
                    usable=reason is None,
                    reason=reason,
                    lag_seconds=lag,
                    replay_lsn=health.format_lsn(state.facts.get("replay_lsn")),
                    paused=bool(state.facts.get("paused")),
                    in_recovery=state.facts.get("in_recovery"),
                    age_seconds=time.monotonic() - (state.failed_at or state.checked),
                )
            )
        return result

    def _reason(self, state: _State) -> str | None:
        if state.failed_at is not None:
            return f"unreachable: {state.error}"
        lag = state.facts.get("lag_seconds")
        if lag is None:
            return "lag unknown"
        return f"{lag:.1f} s behind" if lag > self.max_lag else None

    def dispose(self) -> None:
        """Close every pooled connection of the primary and the replicas (sync sets)."""
        for engine in (self.primary, *self.replicas):
            engine.dispose()

    async def dispose_async(self) -> None:
        """Close every pooled connection of an async set."""
        for engine in self._engines:
            if isinstance(engine, AsyncEngine):
                await engine.dispose()


def _sync(engine: Engine | AsyncEngine) -> Engine:
    return engine.sync_engine if isinstance(engine, AsyncEngine) else engine


def _seconds(value: float | str | timedelta, name: str) -> float:
    """Return ``value`` in seconds: a number of seconds, ``"500ms"``, or a timedelta."""
    try:
        if isinstance(value, timedelta):
            seconds = value.total_seconds()
        elif isinstance(value, str):
            seconds = parse_duration(value, unit="s").total_seconds()
        elif isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        else:
            raise ValueError
        if seconds < 0:
            raise ValueError
    except ValueError:
        raise UserError(
            f"{name}={value!r} is not a duration.",
            hint="Give seconds (2.5), a duration such as '500ms' or '10s', or a timedelta.",
        ) from None
    return seconds
