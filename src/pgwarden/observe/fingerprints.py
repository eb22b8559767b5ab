"""Give every query shape one stable id, whatever its literals and parameter values.

``SELECT * FROM t WHERE id = 1`` and ``... id = 2`` and ``... id IN (1, 2, 3)`` share a
fingerprint (libpg_query's, through pglast), so it can label a metric without letting
its cardinality grow with the data, group repeated statements, and be matched to the
normalised query text of ``pg_stat_statements``.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

from pglast import parser

__all__ = ["fingerprint", "is_read", "normalize"]

_CACHE_SIZE = 4096

# psycopg writes parameters as %(name)s or %s; libpg_query reads $n.
_DBAPI_PARAM = re.compile(r"%\(\w+\)s|%s")
_LITERAL = re.compile(r"'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b")
_SPACE = re.compile(r"\s+")


def _pg_text(statement: str) -> str:
    counter = iter(range(1, 1_000_000))
    return _DBAPI_PARAM.sub(lambda _m: f"${next(counter)}", statement).replace("%%", "%")


@lru_cache(maxsize=_CACHE_SIZE)
def fingerprint(statement: str) -> str:
    """Return the 16-hex-digit fingerprint of ``statement``'s shape (cached)."""
    try:
        return str(parser.fingerprint(_pg_text(statement)))
    except Exception:  # any text gets an id, parsable or not
        shape = _loose_shape(statement).lower()
        return hashlib.sha1(shape.encode(), usedforsecurity=False).hexdigest()[:16]


@lru_cache(maxsize=_CACHE_SIZE)
def normalize(statement: str) -> str:
    """Return ``statement`` with every literal and parameter replaced by ``$n`` (cached)."""
    try:
        return str(parser.normalize(_pg_text(statement)))
    except Exception:
        return _loose_shape(statement)


@lru_cache(maxsize=_CACHE_SIZE)
def is_read(statement: str) -> bool:
    """Return whether ``statement`` is a query (SELECT, or WITH ... SELECT) (cached)."""
    head = statement.lstrip()[:6].upper()
    return head == "SELECT" or head.startswith("WITH")


def _loose_shape(statement: str) -> str:
    # For text libpg_query cannot parse: literals out, spaces collapsed.
    return _SPACE.sub(" ", _LITERAL.sub("?", statement)).strip()
