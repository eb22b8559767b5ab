"""Say how a statement is cached: the ``cached()`` option and the policy it carries."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm.interfaces import UserDefinedOption

from pgwarden.errors import UserError

__all__ = ["EXECUTION_OPTION", "CachePolicy", "cached", "policy_of"]

EXECUTION_OPTION = "pgwarden_cache"
"""The execution option that marks a statement for the cache (a :class:`CachePolicy`)."""


@dataclass(frozen=True)
class CachePolicy:
    """How long a statement's result is kept and which tags it carries.

    ``ttl`` is how long an entry is fresh (None: the cache's default); past it, for
    ``stale_ttl`` more seconds, one caller recomputes it while the others are served
    the aged entry. Writes to the tables read invalidate an entry at once, whatever
    its TTL; the TTL bounds what the cache cannot see (writes by other applications).
    ``vary`` is added to the key: whatever else the result depends on that is not in
    the statement, such as the tenant row-level security filters on.
    """

    ttl: float | None = None
    stale_ttl: float | None = None
    tags: tuple[str, ...] = ()
    vary: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("ttl", "stale_ttl"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UserError(
                    f"the cache's {name} must be a positive number of seconds, not {value!r}",
                    hint=f"Pass {name}=60 for a minute, or leave it out for the default.",
                )
        for tag in self.tags:
            if not isinstance(tag, str) or not tag:
                raise UserError(
                    f"a cache tag must be a non-empty string, not {tag!r}",
                    hint='Name tags for what they group, e.g. tags=("catalogue",).',
                )


class cached(UserDefinedOption):
    """Mark a SELECT for the cache: ``select(Content).options(cached(ttl=60))``."""

    def __init__(
        self,
        *,
        ttl: float | None = None,
        stale_ttl: float | None = None,
        tags: Iterable[str] = (),
        vary: Iterable[object] = (),
    ) -> None:
        policy = CachePolicy(
            ttl=ttl, stale_ttl=stale_ttl, tags=tuple(tags), vary=tuple(map(str, vary))
        )
        super().__init__(policy)


def policy_of(statement: Any, execution_options: Any = None) -> CachePolicy | None:
    """Return the cache policy a statement carries, by option or execution option."""
    for option in getattr(statement, "_with_options", ()):
        if isinstance(option, cached):
            payload = option.payload
            if isinstance(payload, CachePolicy):
                return payload
    for options in (execution_options, getattr(statement, "_execution_options", None)):
        value = (options or {}).get(EXECUTION_OPTION)
        if isinstance(value, CachePolicy):
            return value
        if value is True:
            return CachePolicy()
    return None
