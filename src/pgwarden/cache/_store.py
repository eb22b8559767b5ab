"""Talk to Redis for the cache: generations, entries, locks; survive Redis going away.

Every entry's key holds the generations of the tables and tags it depends on, read in
the same Lua script that reads the entry, so a bump of any of them makes the old
entries unreachable at once, in every process, whatever a slow filler writes later.
When Redis cannot be reached the store says so (``None`` answers), stays away for
``retry_interval`` seconds, and on its first success afterwards bumps the global epoch
and publishes the invalidations it could not, before answering anything else.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pgwarden._extras import importing_extra
from pgwarden.cache.stats import Counters
from pgwarden.urls import redact_text

with importing_extra("cache", "The query cache needs {package}", {"redis": "redis"}):
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

__all__ = ["Lookup", "Store"]

log = logging.getLogger("pgwarden.cache")
T = TypeVar("T")

# A generation that does not exist yet starts at Redis's clock in microseconds: after an
# eviction or a restart it comes back as a value no earlier entry was filed under.
_LOOKUP = """
local stamp = {}
for i, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if not v then
    local t = redis.call('TIME')
    v = t[1] .. string.format('%06d', tonumber(t[2]))
    redis.call('SET', k, v)
  end
  stamp[i] = v
end
local sha = redis.sha1hex(ARGV[2] .. '|' .. table.concat(stamp, ','))
local key, lock = ARGV[1] .. 'e:' .. sha, ARGV[1] .. 'l:' .. sha
local value = redis.call('GET', key)
local locked = 0
if not value and redis.call('SET', lock, ARGV[3], 'NX', 'PX', ARGV[4]) then locked = 1 end
return {key, lock, value, locked}
"""
# Store an entry and release the lock its filler held, in one round trip.
_FILL = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
"""
# A missing generation needs no bump: nothing can be filed under it until a reader
# creates it, and a reader creates it newer than anything before.
_BUMP = """
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('EXISTS', k) == 1 then redis.call('INCR', k); n = n + 1 end
end
return n
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Lookup:
    """Where an entry lives under the current generations, and what was found there."""

    key: str
    lock: str
    value: bytes | None
    token: str | None  # the lock's token when this lookup took it (there was no entry)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Store:
    """Hold the Redis client and the few scripts the cache runs, with outage handling."""

    def __init__(
        self,
        client: redis.Redis | str,
        *,
        namespace: str,
        counters: Counters,
        timeout: float,
        retry_interval: float,
    ) -> None:
        if isinstance(client, str):
            client = redis.Redis.from_url(
                client,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
            )
        self.client = client
        self.prefix = f"{namespace}:"
        self.epoch_key = f"{namespace}:epoch"
        self.counters = counters
        self.retry_interval = retry_interval
        self._lookup = client.register_script(_LOOKUP)
        self._bump = client.register_script(_BUMP)
        self._fill = client.register_script(_FILL)
        self._release = client.register_script(_RELEASE)
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._outage = False  # seen since the last successful recovery
        self._pending: set[str] = set()
        self._retrier: threading.Thread | None = None

    # -- keys
    def gen_key(self, table: str) -> str:
        """Return the key of a table's generation counter."""
        return f"{self.prefix}g:{table}"

    def tag_key(self, tag: str) -> str:
        """Return the key of a tag's generation counter."""
        return f"{self.prefix}t:{tag}"

    # -- operations; each returns None when Redis could not be reached
    def lookup(self, keys: Sequence[str], base: str, *, lock_ttl: float) -> Lookup | None:
        """Read the entry for ``base`` under the current generations of ``keys``.

        When there is none, take its lock in the same call (``token`` says whether).
        """
        token = secrets.token_hex(8)
        args: list[str | int | bytes] = [self.prefix, base, token, max(1, int(lock_ttl * 1000))]
        answer = self._call(lambda: self._lookup(keys=[self.epoch_key, *keys], args=args))
        if answer is None:
            return None
        key, lock, value, locked = answer
        return Lookup(_text(key), _text(lock), value, token if locked else None)

    def fill(self, lookup: Lookup, value: bytes, *, ttl: float, token: str | None) -> bool:
        """Store ``value`` as the entry of ``lookup`` and release ``token``'s lock."""
        keys = [lookup.key, lookup.lock]
        args: list[str | int | bytes] = [value, max(1, int(ttl * 1000)), token or ""]
        return self._call(lambda: self._fill(keys=keys, args=args)) is not None

    def get(self, key: str) -> bytes | None:
        """Return the value at ``key`` (None when absent or Redis is away)."""
        value = self._call(lambda: self.client.get(key))
        return value if isinstance(value, bytes) else None

    def bump(self, keys: Iterable[str]) -> bool:
        """Bump the generations at ``keys``; keep them for later when Redis is away."""
        keys = sorted(set(keys))
        if not keys:
            return True
        done = self._call(lambda: self._bump(keys=keys))
        if done is None:
            with self._lock:
                self._pending.update(keys)
                start = self._retrier is None or not self._retrier.is_alive()
                if start:
                    self._retrier = threading.Thread(
                        target=self._retry, name="pgwarden-cache-retry", daemon=True
                    )
            if start and self._retrier is not None:
                self._retrier.start()
            return False
        self.counters.add("invalidations", len(keys))
        return True

    def acquire(self, key: str, *, ttl: float) -> str | None:
        """Take the lock at ``key`` for ``ttl`` seconds; return its token, or None."""
        token = secrets.token_hex(8)
        got = self._call(lambda: self.client.set(key, token, nx=True, px=int(ttl * 1000)))
        return token if got else None

    def release(self, key: str, token: str) -> None:
        """Release the lock at ``key`` if ``token`` still holds it."""
        self._call(lambda: self._release(keys=[key], args=[token]))

    @property
    def available(self) -> bool:
        """Say whether the store will try Redis now (False within an outage's back-off)."""
        return time.monotonic() >= self._down_until

    def _call(self, operation: Callable[[], T]) -> T | None:
        if not self.available:
            self.counters.add("redis_skipped")
            return None
        try:
            if self._outage:
                self._recover()
            return operation()
        except (redis.RedisError, OSError) as exc:
            self._went_down(exc)
            return None

    def _retry(self) -> None:
        # Invalidations this process could not publish are published as soon as Redis
        # answers again, without waiting for this process's next query.
        while True:
            time.sleep(self.retry_interval)
            with self._lock:
                if not self._outage:
                    return
            if self._call(lambda: self.client.ping()) is not None:
                return

    def _recover(self) -> None:
        # Writes may have committed while Redis was away, and their invalidations never
        # got here: no entry filed before now may be served again.
        with self._lock:
            pending = sorted(self._pending)
        self.client.incr(self.epoch_key)
        if pending:
            self._bump(keys=pending)
        with self._lock:
            self._pending.difference_update(pending)
            self._outage = False
        self.counters.add("invalidations", len(pending) + 1)
        log.warning("the query cache reaches Redis again; entries from before are dropped")

    def _went_down(self, exc: BaseException) -> None:
        self.counters.add("errors")
        with self._lock:
            first = not self._outage
            self._outage = True
            self._down_until = time.monotonic() + self.retry_interval
        if first:
            log.warning(
                "the query cache cannot reach Redis (%s); queries go to the database",
                redact_text(str(exc)),
            )
