"""What one router shares between requests: the engine, caches, limits and jobs.

Library calls are blocking; :meth:`Runtime.call` runs them in a worker thread, so the
event loop keeps serving while a database is slow. :meth:`Runtime.cached` serves a
result for a few seconds and lets one computation run at a time per key: a hundred
requests arriving on a cold cache cause one query, not a hundred.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from pgwarden.api.errors import RateLimited
from pgwarden.api.jobs import Jobs
from pgwarden.api.options import ApiOptions
from pgwarden.api.tokens import ApiToken, find_token, token_digest
from pgwarden.backup.storage import Storage
from pgwarden.config import Settings
from pgwarden.db.engines import connect, create_engine
from pgwarden.errors import ConfigError

__all__ = ["Runtime"]

T = TypeVar("T")
_TOKEN_CACHE_SIZE = 1024


class Runtime:
    """The state behind one router."""

    def __init__(self, settings: Settings, options: ApiOptions) -> None:
        if not settings.database_url:
            raise ConfigError(
                "the admin API needs a database URL.",
                hint="Set DATABASE_URL (or pass --database-url to `pgwarden serve`).",
            )
        self.settings = settings
        self.options = options
        self.jobs = Jobs()
        self.csrf_key = secrets.token_bytes(32)  # per process: a restart asks for a new form
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()
        self._cache: dict[str, tuple[float, Any]] = {}
        self._flights: dict[str, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._derived: dict[str, tuple[object, Any]] = {}
        self._tokens: collections.OrderedDict[str, tuple[float, ApiToken | None]] = (
            collections.OrderedDict()
        )
        self._calls: dict[int | None, collections.deque[float]] = {}

    @property
    def engine(self) -> Engine:
        """Return the API's pooled engine, created on first use."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = create_engine(
                    self.settings.database_url,
                    settings=self.settings,
                    application_name="pgwarden-api",
                    pool_pre_ping=True,
                )
                if self.options.observe:
                    from pgwarden.observe import instrument

                    # Jobs hold a connection for as long as a backup takes: not a leak.
                    # Its statements are pgwarden's own, not the application's to report.
                    instrument(
                        self._engine, name="pgwarden-api", leak_seconds=None, sentry=False,
                        reports=False,
                    )  # fmt: skip
            return self._engine

    def dispose(self) -> None:
        """Close the engine's connections (the jobs' threads are left to end)."""
        with self._engine_lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    def storage(self) -> Storage:
        """Open the backup storage of PGWARDEN_BACKUP_STORAGE."""
        from pgwarden.backup.storage import open_storage

        if not self.settings.backup_storage:
            raise ConfigError(
                "no backup storage is configured for the API.",
                hint="Set PGWARDEN_BACKUP_STORAGE (a directory or s3://bucket/prefix).",
            )
        return open_storage(self.settings)

    def with_connection(
        self, work: Callable[..., T], *args: Any, commit: bool = False, **kwargs: Any
    ) -> T:
        """Run ``work(conn, *args, **kwargs)`` on a pooled connection, in this thread."""
        with connect(self.engine) as conn:
            result = work(conn, *args, **kwargs)
            if commit:
                conn.commit()
            return result

    async def call(
        self, work: Callable[..., T], *args: Any, commit: bool = False, **kwargs: Any
    ) -> T:
        """Run ``work(conn, ...)`` on a pooled connection in a worker thread."""
        bound = functools.partial(self.with_connection, work, *args, commit=commit, **kwargs)
        return await run_in_threadpool(bound)

    async def in_thread(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``work(*args, **kwargs)`` (storage, not the database) in a worker thread."""
        return await run_in_threadpool(work, *args, **kwargs)

    async def cached(
        self,
        key: str,
        ttl_s: float,
        compute: Callable[[], Awaitable[T]],
        *,
        stale_s: float = 0.0,
    ) -> T:
        """Return ``compute()``'s result for ``key``, computed at most once per ``ttl_s``.

        One computation runs at a time per key; callers arriving meanwhile share it. With
        ``stale_s``, a result expired less than ``stale_s`` ago is returned at once while
        one computation refreshes it in the background: no caller waits for a refresh.
        """
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]  # type: ignore[no-any-return]
        flight = self._flights.get(key)
        if hit is not None and hit[0] + stale_s > now:
            if flight is None:
                self._launch(key, ttl_s, compute)
            return hit[1]  # type: ignore[no-any-return]
        if flight is None:
            flight = self._launch(key, ttl_s, compute)
        shared: T = await asyncio.shield(flight)
        return shared

    def _launch(
        self, key: str, ttl_s: float, compute: Callable[[], Awaitable[Any]]
    ) -> asyncio.Future[Any]:
        """Start computing ``key`` in a task of its own; return the future of its result."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._flights[key] = future

        async def run() -> None:
            try:
                value = await compute()
            except BaseException as error:
                future.set_exception(error)
                future.exception()  # retrieved: no "never retrieved" warning when none waits
            else:
                self._cache[key] = (time.monotonic() + ttl_s, value)
                future.set_result(value)
            finally:
                del self._flights[key]
                self._tasks.discard(task)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)  # held: a task only weakly referenced may be collected
        return future

    def derived(self, key: str, source: object, make: Callable[[], T]) -> T:
        """Return ``make()``, made once for each ``source`` object (a cached result)."""
        held = self._derived.get(key)
        if held is not None and held[0] is source:
            return held[1]  # type: ignore[no-any-return]
        value = make()
        self._derived[key] = (source, value)
        return value

    def forget(self, prefix: str) -> None:
        """Drop the cached results whose key starts with ``prefix`` (from any thread)."""
        for key in list(self._cache):  # a copy taken at once: jobs call this from threads
            if key.startswith(prefix):
                self._cache.pop(key, None)

    async def token(self, secret: str) -> ApiToken | None:
        """Return the live token of ``secret``, looked up at most once per cache period."""
        digest = token_digest(secret)
        now = time.monotonic()
        hit = self._tokens.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        found = await self.call(find_token, secret)
        self._tokens[digest] = (now + self.options.token_cache_s, found)
        self._tokens.move_to_end(digest)
        while len(self._tokens) > _TOKEN_CACHE_SIZE:
            self._tokens.popitem(last=False)
        return found

    def forget_tokens(self) -> None:
        """Forget every checked token: a revocation here takes effect at once."""
        self._tokens.clear()

    def csrf_token(self, secret: str) -> str:
        """Return the form token that goes with the session of ``secret``."""
        return hmac.new(self.csrf_key, token_digest(secret).encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, secret: str, given: str | None) -> bool:
        """Return whether ``given`` is the form token of the session of ``secret``."""
        return given is not None and hmac.compare_digest(self.csrf_token(secret), given)

    def count_call(self, token_id: int | None) -> None:
        """Count one changing call of ``token_id``; raise :class:`RateLimited` past the limit."""
        now = time.monotonic()
        window = self.options.rate_window_s
        calls = self._calls.setdefault(token_id, collections.deque())
        while calls and calls[0] <= now - window:
            calls.popleft()
        if len(calls) >= self.options.rate_limit:
            retry = max(calls[0] + window - now, 0.0)
            raise RateLimited(
                f"this token made {len(calls)} changing calls in the last {window:g} s, "
                f"the most allowed.",
                retry_after_s=retry,
                hint=f"Try again in {retry:.0f} s.",
            )
        calls.append(now)
