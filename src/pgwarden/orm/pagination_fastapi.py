"""FastAPI dependencies that read the query parameters of a paged listing.

::

    keyset = keyset_params(secret=settings.cursor_secret, max_per_page=100)

    @app.get("/content")
    async def list_content(session: SessionDep, params: KeysetParams = Depends(keyset)):
        page = await session.run_sync(
            lambda s: keyset_page(s, stmt, secret=settings.cursor_secret, **params.options())
        )

A cursor that was changed or signed with another secret is answered with 400 and the
reason, before the route runs. Needs the ``api`` extra (``pip install 'pgwarden[api]'``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pgwarden._extras import importing_extra
from pgwarden.orm._cursors import check_secret, decode_cursor
from pgwarden.orm.errors import InvalidCursor

with importing_extra("api", "FastAPI pagination needs {package}", {"fastapi": "fastapi"}):
    from fastapi import HTTPException, Query

__all__ = ["KeysetParams", "OffsetParams", "keyset_params", "offset_params"]


@dataclass(frozen=True)
class KeysetParams:
    """The keyset page a request asks for: ``after`` or ``before`` a cursor, or the first."""

    after: str | None
    before: str | None
    per_page: int

    def options(self) -> dict[str, Any]:
        """Return the keyword arguments of :func:`~pgwarden.orm.keyset_page` they make."""
        return {"after": self.after, "before": self.before, "per_page": self.per_page}


@dataclass(frozen=True)
class OffsetParams:
    """The offset page a request asks for."""

    page: int
    per_page: int

    def options(self) -> dict[str, Any]:
        """Return the keyword arguments of :func:`~pgwarden.orm.offset_page` they make."""
        return {"page": self.page, "per_page": self.per_page}


def keyset_params(
    *, secret: str | bytes, default_per_page: int = 20, max_per_page: int = 100
) -> Callable[..., KeysetParams]:
    """Return a dependency reading ``after``, ``before`` and ``per_page``; it checks a
    cursor's signature with ``secret`` and answers 400 for a bad one."""
    key = check_secret(secret)

    def dependency(
        after: str | None = Query(None, description="next_cursor of the previous page"),
        before: str | None = Query(None, description="previous_cursor of the next page"),
        per_page: int = Query(default_per_page, ge=1, le=max_per_page),
    ) -> KeysetParams:
        if after is not None and before is not None:
            raise HTTPException(400, "give 'after' or 'before', not both")
        for cursor in (after, before):
            if cursor is not None:
                try:
                    decode_cursor(key, cursor)
                except InvalidCursor as exc:
                    raise HTTPException(400, exc.message) from None
        return KeysetParams(after=after, before=before, per_page=per_page)

    return dependency


def offset_params(
    *, default_per_page: int = 20, max_per_page: int = 100, max_page: int = 10_000
) -> Callable[..., OffsetParams]:
    """Return a dependency reading ``page`` (from 1) and ``per_page``, within bounds."""

    def dependency(
        page: int = Query(1, ge=1, le=max_page),
        per_page: int = Query(default_per_page, ge=1, le=max_per_page),
    ) -> OffsetParams:
        return OffsetParams(page=page, per_page=per_page)

    return dependency
