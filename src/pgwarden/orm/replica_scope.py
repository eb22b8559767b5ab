"""Units of work for replica routing: a request that wrote keeps reading its writes.

``with routing_scope():`` opens a unit; every routing session used inside it, in this
thread or task and those it starts, shares what the unit did: once one of them wrote,
reads go to the primary for the rest of the unit (or, with ``lsn_read_your_writes``, to
a replica that has replayed the write). :class:`ReplicaScopeMiddleware` opens one per
HTTP request; :func:`routing_scope_dependency` does the same as a FastAPI dependency.
``with use_primary():`` sends everything inside to the primary.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ReplicaScopeMiddleware",
    "WorkUnit",
    "current_unit",
    "primary_forced",
    "routing_scope",
    "routing_scope_dependency",
    "use_primary",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class WorkUnit:
    """What a unit of work did: whether it wrote, and the primary's WAL position after."""

    wrote: bool = False
    write_lsn: int | None = None  # set at commit under lsn_read_your_writes


_unit: ContextVar[WorkUnit | None] = ContextVar("pgwarden_routing_unit", default=None)
_primary: ContextVar[bool] = ContextVar("pgwarden_routing_primary", default=False)


def current_unit() -> WorkUnit | None:
    """Return the innermost :func:`routing_scope`'s unit, or None outside any."""
    return _unit.get()


def primary_forced() -> bool:
    """Return whether a :func:`use_primary` block is in force."""
    return _primary.get()


@contextmanager
def routing_scope() -> Iterator[WorkUnit]:
    """Open a unit of work (a request): after a write in it, its reads see the write."""
    token = _unit.set(WorkUnit())
    try:
        yield _unit.get() or WorkUnit()
    finally:
        _unit.reset(token)


@contextmanager
def use_primary() -> Iterator[None]:
    """Send every statement inside the block to the primary, reads included."""
    token = _primary.set(True)
    try:
        yield
    finally:
        _primary.reset(token)


async def routing_scope_dependency() -> AsyncIterator[WorkUnit]:
    """Run a FastAPI request inside :func:`routing_scope` (``Depends(...)``).

    Async on purpose: FastAPI runs a sync generator dependency in a worker thread,
    whose context would not reach the endpoint.
    """
    with routing_scope() as unit:
        yield unit


class ReplicaScopeMiddleware:
    """Run each HTTP and WebSocket request of an ASGI app inside :func:`routing_scope`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        with routing_scope():
            await self.app(scope, receive, send)
