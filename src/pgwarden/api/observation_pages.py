"""The dashboard's pages of what applications saw (N+1s, slow statements) and of the fleet.

They are drawn from the same library calls as ``/observe/nplusone``, ``/observe/slow``
and ``/fleet``; a call that cannot run here (no fleet configured) is said on the page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request

from pgwarden.api import charts
from pgwarden.api._edge import Caller, error_message
from pgwarden.api._runtime import Runtime
from pgwarden.api.observations import fleet_targets
from pgwarden.errors import PgwardenError
from pgwarden.insight.errors import CheckSkipped
from pgwarden.observe.reports import nplusone_reports, slow_statement_reports

__all__ = ["add_observation_pages", "unless_failing"]

Gather = Callable[[Request, Caller], Awaitable[dict[str, Any]]]


async def unless_failing(work: Awaitable[Any]) -> Any:
    """Return what ``work`` returns, or why it cannot run here (a string)."""
    try:
        return await work
    except (PgwardenError, CheckSkipped) as error:
        return error_message(error)


def add_observation_pages(
    page: Callable[[str, str], Callable[[Gather], Any]], runtime: Runtime
) -> None:
    """Add the application and fleet pages through the dashboard's ``page`` registrar."""

    @page("/application", "application")
    async def application(request: Request, caller: Caller) -> dict[str, Any]:
        nplusone = await unless_failing(runtime.call(nplusone_reports, limit=50))
        slow = await unless_failing(runtime.call(slow_statement_reports, limit=50))
        chart = None
        if isinstance(slow, list) and slow:
            top = slow[:15]
            chart = charts.chart(
                "bar", "", [f"#{i + 1}" for i in range(len(top))],
                [[round(s.p50_ms, 1) for s in top], [round(s.p95_ms, 1) for s in top]],
                names=["p50 ms", "p95 ms"],
            )  # fmt: skip
        return {"nplusone": nplusone, "slow": slow, "chart": chart}

    @page("/fleet", "fleet")
    async def fleet(request: Request, caller: Caller) -> dict[str, Any]:
        return {"targets": await unless_failing(runtime.in_thread(fleet_targets, runtime))}

    @page("/fleet/{target}", "fleet_target")
    async def fleet_target(request: Request, caller: Caller) -> dict[str, Any]:
        name = str(request.path_params["target"])[:200]
        found = await unless_failing(runtime.in_thread(fleet_targets, runtime, target=name))
        return {"target": name, "found": found if isinstance(found, str) else found[0]}
