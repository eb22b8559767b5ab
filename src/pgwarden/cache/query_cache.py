"""Cache SELECT results in Redis, keyed by statement and parameters, invalidated by table.

See docs/cache.md for the design. In short: an entry's key is a hash of the
statement's SQL, its parameter values, and the current generation of every table and
tag it reads plus a global epoch, all read in one Lua call before the database is
queried. A commit that wrote a table bumps the table's generation before the commit
returns, so from then on every process computes new keys and the old entries (and any
stale fill still in flight) can never be found again.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Result
from sqlalchemy.engine.result import IteratorResult, SimpleResultMetaData
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pgwarden.cache import codec
from pgwarden.cache._store import Store
from pgwarden.cache.errors import NotCacheable
from pgwarden.cache.policy import CachePolicy, policy_of
from pgwarden.cache.stats import CacheStats, Counters
from pgwarden.cache.tables import EVERYTHING, read_tables

__all__ = ["WRITTEN", "QueryCache"]

log = logging.getLogger("pgwarden.cache")

WRITTEN = "pgwarden_cache_written"
"""Key in a connection's ``info`` of the tables its open transaction wrote."""

_SAFE_LEVELS = {None, "READ COMMITTED", "READ UNCOMMITTED", "AUTOCOMMIT"}
Load = Callable[[], tuple[Any, dict[str, Any], frozenset[str]]]


@dataclass
class _Plan:
    sql_digest: str
    tables: frozenset[str]
    compiled: Any
    learned: set[str] = field(default_factory=set)


class QueryCache:
    """Cache SELECT results in Redis and drop them when the tables they read change.

    ``redis_client`` is a URL (``redis://127.0.0.1:6379/0``) or a ``redis.Redis``.
    Entries live under ``namespace``; change ``version`` to drop every entry at once
    (after a deploy that changes what a query returns). Call :meth:`instrument` on every
    engine that writes the cached tables: only its commits invalidate, and only reads
    through an instrumented engine are cached.
    """

    def __init__(
        self,
        redis_client: Any,
        *,
        namespace: str = "pgwarden:cache",
        version: str = "1",
        ttl: float = 300.0,
        stale_ttl: float = 30.0,
        lock_timeout: float = 10.0,
        lock_wait: float = 1.0,
        timeout: float = 0.25,
        retry_interval: float = 1.0,
    ) -> None:
        self.defaults = CachePolicy(ttl=ttl, stale_ttl=stale_ttl)
        self.version = version
        self.lock_timeout = lock_timeout
        self.lock_wait = lock_wait
        self._counters = Counters()
        self.store = Store(
            redis_client,
            namespace=namespace,
            counters=self._counters,
            timeout=timeout,
            retry_interval=retry_interval,
        )
        self._plans: dict[Any, _Plan] = {}
        self._engines: set[Engine] = set()
        self._classes: dict[type, CachePolicy] = {}

    # -- setup
    def instrument(self, engine: Engine | AsyncEngine) -> None:
        """Track writes on ``engine`` and publish them to Redis when each commit returns."""
        from pgwarden.cache.invalidation import track_writes

        target = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
        if target not in self._engines:
            track_writes(self, target)
            self._engines.add(target)

    def attach(self, sessions: Any) -> None:
        """Serve marked ORM SELECTs of ``sessions`` from the cache (a Session or a factory)."""
        from pgwarden.cache.orm import attach

        attach(self, sessions)

    def cache_class(self, cls: type, *, ttl: float | None = None, tags: Iterable[str] = ()) -> None:
        """Cache every ORM SELECT whose entities are all ``cls`` or other such classes."""
        self._classes[cls] = CachePolicy(ttl=ttl, tags=tuple(tags))

    def serves(self, conn: Connection) -> bool:
        """Say whether ``conn``'s engine is instrumented by this cache."""
        return conn.engine in self._engines

    def stats(self) -> CacheStats:
        """Return the counters so far."""
        return self._counters.snapshot()

    # -- reading
    def execute(
        self,
        conn: Connection,
        statement: Any,
        params: Mapping[str, Any] | None = None,
        *,
        policy: CachePolicy | None = None,
        refresh: bool = False,
    ) -> Result[Any]:
        """Run a Core SELECT through the cache and return its result.

        The policy is ``policy``, else the statement's ``cached()`` option, else the
        cache's defaults. ``refresh`` queries the database and stores the answer anew
        (warming). Raise :class:`NotCacheable` if ``statement`` is not a SELECT.
        """
        policy = policy or policy_of(statement) or CachePolicy()

        def load() -> tuple[Any, dict[str, Any], frozenset[str]]:
            result = conn.execute(statement, dict(params or {}))
            keys = list(map(str, result.keys()))
            rows = [tuple(row) for row in result]
            return _rows_result(keys, rows), {"k": keys, "r": rows}, frozenset()

        def rebuild(payload: dict[str, Any]) -> Result[Any]:
            return _rows_result(payload["k"], [tuple(row) for row in payload["r"]])

        return self.through(conn, statement, params, policy, load, rebuild, refresh=refresh)  # type: ignore[no-any-return]

    async def execute_async(
        self,
        conn: AsyncConnection,
        statement: Any,
        params: Mapping[str, Any] | None = None,
        *,
        policy: CachePolicy | None = None,
        refresh: bool = False,
    ) -> Result[Any]:
        """Run :meth:`execute` on an async connection."""
        return await conn.run_sync(
            lambda sync: self.execute(sync, statement, params, policy=policy, refresh=refresh)
        )

    def warm(self, conn: Connection, statements: Iterable[Any]) -> int:
        """Query each statement and store its result, fresh; return how many were stored."""
        before = self._counters.snapshot().fills
        for statement in statements:
            self.execute(conn, statement, refresh=True)
        return self._counters.snapshot().fills - before

    # -- invalidating
    def invalidate_tables(self, *tables: str) -> bool:
        """Drop every entry reading any of ``tables``; say whether Redis took it now."""
        return self.store.bump(self.store.gen_key(t) for t in tables)

    def invalidate_tags(self, *tags: str) -> bool:
        """Drop every entry carrying any of ``tags``; say whether Redis took it now."""
        return self.store.bump(self.store.tag_key(t) for t in tags)

    def invalidate_all(self) -> bool:
        """Drop every entry of this namespace; say whether Redis took it now."""
        return self.store.bump([self.store.epoch_key])

    def publish(self, tables: Iterable[str]) -> None:
        """Publish a commit's written tables (the commit hook calls it)."""
        tables = set(tables)
        if EVERYTHING in tables:
            self.invalidate_all()
        else:
            self.invalidate_tables(*tables)

    # -- the read path, shared by Core and ORM
    def policy_for(
        self, statement: Any, execution_options: Any, mappers: Iterable[Any]
    ) -> CachePolicy | None:
        """Return the policy of an ORM statement: its own, or its classes' when all have one."""
        policy = policy_of(statement, execution_options)
        if policy is not None or not self._classes:
            return policy
        found = [self._classes.get(m.class_) for m in mappers]
        if not found or None in found:
            return None
        tags = tuple(sorted({t for p in found if p for t in p.tags}))
        ttls = [p.ttl for p in found if p and p.ttl]
        return CachePolicy(ttl=min(ttls) if ttls else None, tags=tags)

    def through(
        self,
        conn: Connection,
        statement: Any,
        params: Mapping[str, Any] | None,
        policy: CachePolicy,
        load: Load,
        rebuild: Callable[[dict[str, Any]], Any],
        *,
        refresh: bool = False,
    ) -> Any:
        """Answer from Redis when a fresh entry exists, else from ``load()``, storing it."""
        plan, base = self._plan(statement, conn.dialect, params, policy.vary)
        tables = plan.tables | plan.learned
        if self._bypass(conn, tables):
            self._counters.add("bypasses")
            return load()[0]
        keys = [self.store.gen_key(t) for t in sorted(tables)]
        keys += [self.store.tag_key(t) for t in sorted(policy.tags)]
        started = time.perf_counter()
        found = self.store.lookup(keys, base, lock_ttl=self.lock_timeout)
        self._counters.observe(time.perf_counter() - started)
        if found is None:
            self._counters.add("bypasses")
            return load()[0]
        raw = found.value
        payload = None if raw is None or refresh else self._decode(raw)
        token = found.token
        if payload is not None:
            self._counters.add("bytes_read", len(raw or b""))
            if payload["x"] > time.time():
                self._counters.add("hits")
                return rebuild(payload)
            token = self.store.acquire(found.lock, ttl=self.lock_timeout)
            if token is None:
                self._counters.add("stale_hits")
                return rebuild(payload)
        else:
            self._counters.add("misses")
            if token is None and not refresh:
                waited = self._wait(found.key)
                if waited is not None:
                    return rebuild(waited)
                return load()[0]
        try:
            result, raw_entry = self._fill(plan, policy, load)
        except BaseException:
            if token is not None:
                self.store.release(found.lock, token)
            raise
        if raw_entry is None:
            if token is not None:
                self.store.release(found.lock, token)
        elif self.store.fill(found, raw_entry, ttl=self._ttls(policy), token=token):
            self._counters.add("fills")
            self._counters.add("bytes_written", len(raw_entry))
        return result

    def _ttls(self, policy: CachePolicy) -> float:
        return self._ttl(policy) + (policy.stale_ttl or self.defaults.stale_ttl or 0.0)

    def _ttl(self, policy: CachePolicy) -> float:
        return policy.ttl or self.defaults.ttl or 300.0

    def _fill(self, plan: _Plan, policy: CachePolicy, load: Load) -> tuple[Any, bytes | None]:
        result, payload, seen = load()
        missing = seen - plan.tables - plan.learned
        if missing:
            # The result reached tables the statement does not name (a selectin load):
            # not stored now; from the next call on its key depends on them too.
            plan.learned.update(missing)
            return result, None
        payload["x"] = time.time() + self._ttl(policy)
        return result, codec.encode(payload).encode()

    def _wait(self, entry_key: str) -> dict[str, Any] | None:
        self._counters.add("lock_waits")
        deadline = time.monotonic() + self.lock_wait
        delay = 0.002
        while time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
            raw = self.store.get(entry_key)
            if raw is not None:
                payload = self._decode(raw)
                if payload is not None:
                    self._counters.add("hits")
                    return payload
        return None

    def _decode(self, raw: bytes) -> dict[str, Any] | None:
        try:
            payload: dict[str, Any] = codec.decode(raw)
        except (ValueError, KeyError, TypeError, LookupError) as exc:
            log.debug("a cache entry could not be decoded (%s); read as a miss", exc)
            return None
        return payload

    def _plan(
        self,
        statement: Any,
        dialect: sa.Dialect,
        params: Mapping[str, Any] | None,
        vary: tuple[str, ...],
    ) -> tuple[_Plan, str]:
        cache_key = statement._generate_cache_key()
        if cache_key is None:
            raise NotCacheable(
                "this statement has no stable cache key (a lambda or a custom construct)",
                hint="Cache a plain select() or text() statement.",
            )
        plan = self._plans.get(cache_key.key)
        if plan is None:
            # With its cache key, later calls' values line up with this one's by position.
            compiled = statement.compile(dialect=dialect, cache_key=cache_key)
            sql = f"{self.version}\x00{compiled.string}"
            plan = _Plan(
                sql_digest=hashlib.sha256(sql.encode()).hexdigest(),
                tables=read_tables(statement, dialect),
                compiled=compiled,
            )
            if len(self._plans) > 4096:
                self._plans.clear()
            self._plans[cache_key.key] = plan
        values = plan.compiled.construct_params(
            dict(params or {}), extracted_parameters=cache_key.bindparams, _check=False
        )
        # Bind names may be SQLAlchemy's quoted_name, a str of its own: plain str here.
        encoded = codec.encode([sorted((str(k), v) for k, v in values.items()), vary])
        return plan, hashlib.sha256(f"{plan.sql_digest}\x00{encoded}".encode()).hexdigest()

    def _bypass(self, conn: Connection, tables: frozenset[str]) -> bool:
        if not self.serves(conn):
            return True
        written = conn.info.get(WRITTEN)
        if written and (EVERYTHING in written or not written.isdisjoint(tables)):
            return True
        level = conn.get_execution_options().get("isolation_level") or getattr(
            conn.dialect, "isolation_level", None
        )
        return level not in _SAFE_LEVELS


def _rows_result(keys: list[str], rows: list[tuple[Any, ...]]) -> Result[Any]:
    return IteratorResult(SimpleResultMetaData(keys), iter(rows))
