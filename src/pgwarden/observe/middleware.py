"""ASGI middleware: per request, count statements and database time, and watch for N+1s.

    app.add_middleware(ObserveMiddleware, mode="warn")   # FastAPI / Starlette
    app = ObserveMiddleware(app)                          # any ASGI app

Each HTTP request runs inside :func:`pgwarden.observe.watch`. With
``server_timing=True`` its response also gets a ``Server-Timing`` header
(``db;dur=12.3;desc="8 statements"``) that browsers' developer tools show next to the
request; it is off by default, since it tells every client how much database work a
request costs, which helps an attacker time queries. Statements are counted on engines
passed to :func:`pgwarden.observe.instrument`; N+1 lazy loads are seen on any session.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from pgwarden.observe.nplusone import Mode, watch

__all__ = ["ObserveMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("pgwarden.observe.requests")


class ObserveMiddleware:
    """Watch each HTTP request for N+1 queries and time its database work.

    ``server_timing`` adds the ``Server-Timing`` header to every response; turn it on
    where only developers see the responses.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        mode: Mode = "log",
        threshold: int = 2,
        allow: Iterable[str] = (),
        server_timing: bool = False,
    ) -> None:
        self.app = app
        self.mode: Mode = mode
        self.threshold = threshold
        self.allow = tuple(allow)
        self.server_timing = server_timing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name = f"{scope.get('method', '')} {scope.get('path', '')}"
        with watch(name, mode=self.mode, threshold=self.threshold, allow=self.allow) as current:

            async def send_with_timing(message: Message) -> None:
                if message["type"] == "http.response.start" and self.server_timing:
                    value = (
                        f"db;dur={current.db_seconds * 1000.0:.1f};"
                        f'desc="{current.statements} statements"'
                    )
                    headers = [*message.get("headers", []), (b"server-timing", value.encode())]
                    message = {**message, "headers": headers}
                await send(message)

            await self.app(scope, receive, send_with_timing)
        log.debug(
            "%s: %d statements, %.1f ms in the database",
            name,
            current.statements,
            current.db_seconds * 1000.0,
            extra={"statements": current.statements, "db_ms": current.db_seconds * 1000.0},
        )
