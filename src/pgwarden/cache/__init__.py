"""A Redis query cache for SQLAlchemy that invalidates itself when the data changes.

    cache = QueryCache("redis://127.0.0.1:6379/0")
    cache.instrument(engine)          # commits on it invalidate, across processes
    cache.attach(Session)             # ORM SELECTs marked with cached() go through it
    session.scalars(select(Category).options(cached(ttl=600))).all()

See docs/cache.md.
"""

from __future__ import annotations

from pgwarden.cache.codec import register_enum
from pgwarden.cache.errors import CacheError, NotCacheable, UnserializableValue
from pgwarden.cache.policy import EXECUTION_OPTION, CachePolicy, cached
from pgwarden.cache.query_cache import QueryCache
from pgwarden.cache.stats import CacheStats

__all__ = [
    "EXECUTION_OPTION",
    "CacheError",
    "CachePolicy",
    "CacheStats",
    "NotCacheable",
    "QueryCache",
    "UnserializableValue",
    "cached",
    "register_enum",
]
