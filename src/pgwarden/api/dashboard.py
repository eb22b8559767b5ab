"""The dashboard: server-rendered pages over the same library calls as the JSON routes.

Pages live under ``PREFIX/dashboard/``. Signing in with a token sets a cookie that is
``Secure``, ``HttpOnly`` and ``SameSite=Strict``, scoped to the API's path; every form
that changes something carries a token bound to that session (CSRF), checked by the same
:func:`~pgwarden.api._edge.authorize` as the JSON routes. Charts are drawn by Chart.js,
served from the package itself (no CDN): a page works with no internet access. Each page
links the JSON route it is drawn from.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from importlib.resources import files
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from pgwarden._units import format_duration, format_size
from pgwarden.api import charts
from pgwarden.api._edge import Caller, authorize, error_message
from pgwarden.api._runtime import Runtime
from pgwarden.api.backups import RestoreRequest, start_backup, start_restore, start_verify
from pgwarden.api.errors import TokenRequired
from pgwarden.api.forms import backup_id_of, read_form, validated
from pgwarden.api.monitoring import doctor_report, summary_of
from pgwarden.api.observation_pages import add_observation_pages, unless_failing
from pgwarden.api.observations import pitr_window
from pgwarden.api.operations import (
    MaintenanceRequest,
    SignalRequest,
    signal_session,
    start_maintenance,
    take_snapshot_audited,
)
from pgwarden.api.tokens import Scope
from pgwarden.errors import PgwardenError, UserError
from pgwarden.insight import history
from pgwarden.insight.activity import sessions
from pgwarden.insight.blocking import blocked_queries
from pgwarden.insight.connections import connection_usage
from pgwarden.insight.errors import CheckSkipped
from pgwarden.insight.indexes import duplicate_indexes, unused_indexes
from pgwarden.insight.sizes import index_sizes, table_sizes
from pgwarden.insight.statements import queries_by_total_time, slow_queries
from pgwarden.maintain import user_tables

__all__ = ["add_dashboard_routes"]

PAGES = (
    ("overview", "Overview", "/summary"),
    ("queries", "Queries", "/statements"),
    ("indexes", "Indexes", "/indexes/unused"),
    ("space", "Space", "/space/tables"),
    ("connections", "Connections", "/connections"),
    ("maintenance", "Maintenance", "/maintenance/tables"),
    ("backups", "Backups", "/backups"),
    ("application", "Application", "/observe/nplusone"),
    ("fleet", "Fleet", "/fleet"),
)
_STATIC = {
    "chart.umd.min.js": "text/javascript",
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_PREFIX_SHAPE = re.compile(r"^(/[A-Za-z0-9._~-]+)*$")

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("pgwarden.api", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_templates.filters["size"] = format_size
_templates.filters["duration"] = lambda s: "-" if s is None else format_duration(s)
_templates.filters["short"] = lambda text, n=120: (
    "" if text is None else (" ".join(str(text).split())[:n])
)


def base_path(request: Request, runtime: Runtime) -> str:
    """Return the path the API's routes are reached at from the browser.

    The ASGI ``root_path`` (``pgwarden serve --root-path``, or the app mounting this),
    then a proxy's ``X-Forwarded-Prefix`` when the options trust it, then the prefix.
    """
    root = str(request.scope.get("root_path", "")).rstrip("/")
    forwarded = ""
    if runtime.options.trust_forwarded_prefix:
        given = request.headers.get("x-forwarded-prefix", "").rstrip("/")
        if _PREFIX_SHAPE.match(given):
            forwarded = given
    return f"{root}{forwarded}{runtime.options.prefix.rstrip('/')}"


def add_dashboard_routes(router: APIRouter, runtime: Runtime) -> None:
    """Add the dashboard's pages, sign-in, forms and static files to ``router``."""
    checks = {scope: authorize(runtime, scope) for scope in ("read", "operate", "admin")}

    async def caller_of(request: Request, scope: Scope) -> Caller:
        return await checks[scope](request, None)

    def render(
        request: Request, name: str, caller: Caller | None, status: int = 200, **values: Any
    ) -> HTMLResponse:
        base = base_path(request, runtime)
        page = _templates.get_template(f"{name}.html").render(
            base=base,
            dash=f"{base}/dashboard",
            pages=PAGES,
            current=name,
            caller=caller,
            csrf=runtime.csrf_token(caller.secret) if caller and caller.secret else "",
            request_done=request.query_params.get("done", "")[:300],
            **values,
        )
        return HTMLResponse(page, status_code=status, headers=_HEADERS)

    def page(
        path: str, name: str
    ) -> Callable[[Callable[[Request, Caller], Awaitable[dict[str, Any]]]], Any]:
        def register(gather: Callable[[Request, Caller], Awaitable[dict[str, Any]]]) -> Any:
            @router.get(f"/dashboard{path}", include_in_schema=False, name=f"dashboard_{name}")
            async def show(request: Request) -> Response:
                try:
                    caller = await caller_of(request, "read")
                except TokenRequired:
                    return RedirectResponse(
                        f"{base_path(request, runtime)}/dashboard/login", status_code=303
                    )
                except PgwardenError as error:
                    return render(request, "error", None, 403, message=error.message)
                return render(request, name, caller, **await gather(request, caller))

            return show

        return register

    def action(path: str, scope: Scope, back: str) -> Callable[..., Any]:
        def register(work: Callable[[Request, Caller, dict[str, str]], Awaitable[str]]) -> Any:
            @router.post(f"/dashboard{path}", include_in_schema=False)
            async def post(request: Request) -> Response:
                try:
                    caller = await caller_of(request, scope)
                    done = await work(request, caller, await read_form(request))
                except TokenRequired:
                    return RedirectResponse(
                        f"{base_path(request, runtime)}/dashboard/login", status_code=303
                    )
                except (PgwardenError, CheckSkipped) as error:
                    status = getattr(error, "status_code", 400)
                    return render(request, "error", None, status, message=error_message(error))
                target = f"{base_path(request, runtime)}/dashboard/{back}"
                return RedirectResponse(f"{target}?done={quote(done)}", status_code=303)

            return post

        return register

    async def attempt(work: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Return what the library call returns, or why it cannot run here (a string)."""
        return await unless_failing(runtime.call(work, *args, **kwargs))

    async def snapshots() -> Any:
        found = await attempt(history.snapshots, limit=200)
        return list(reversed(found)) if isinstance(found, list) else found

    add_observation_pages(page, runtime)

    # -- sign-in -------------------------------------------------------------------

    @router.get("/dashboard/login", include_in_schema=False)
    async def login_form(request: Request) -> Response:
        return render(request, "login", None, message=None)

    @router.post("/dashboard/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        secret = (await read_form(request)).get("token", "").strip()
        token = await runtime.token(secret) if secret else None
        if token is None:
            return render(request, "login", None, 401, message="That token is not valid.")
        base = base_path(request, runtime)
        answer = RedirectResponse(f"{base}/dashboard/", status_code=303)
        answer.set_cookie(
            runtime.options.cookie_name, secret, path=base or "/", secure=True,
            httponly=True, samesite="strict", max_age=12 * 3600,
        )  # fmt: skip
        return answer

    @router.post("/dashboard/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        base = base_path(request, runtime)
        answer = RedirectResponse(f"{base}/dashboard/login", status_code=303)
        answer.delete_cookie(
            runtime.options.cookie_name, path=base or "/", secure=True, httponly=True,
            samesite="strict",
        )  # fmt: skip
        return answer

    @router.get("/dashboard/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in _STATIC:
            return Response("not found", status_code=404, media_type="text/plain")
        body = files("pgwarden.api").joinpath("static", name).read_bytes()
        return Response(
            body, media_type=_STATIC[name], headers={"Cache-Control": "public, max-age=3600"}
        )

    # -- pages ---------------------------------------------------------------------

    @page("/", "overview")
    async def overview(request: Request, caller: Caller) -> dict[str, Any]:
        report = await doctor_report(runtime)
        summary = summary_of(report)
        return {
            "summary": summary,
            "findings": report.findings,
            "severity_chart": charts.chart(
                "bar", "Findings by severity", list(summary.counts), [list(summary.counts.values())]
            ),
            "size_chart": charts.size_chart(await snapshots()),
        }

    @page("/queries", "queries")
    async def queries(request: Request, caller: Caller) -> dict[str, Any]:
        top = await attempt(queries_by_total_time, limit=15)
        slow = await attempt(slow_queries, limit=15)
        chart = None
        if isinstance(top, list) and top:
            labels = [f"#{i + 1}" for i in range(len(top))]
            chart = charts.chart(
                "bar", "Total time (ms)", labels, [[round(q.total_ms, 2) for q in top]]
            )
        return {"top": top, "slow": slow, "chart": chart}

    @page("/indexes", "indexes")
    async def indexes(request: Request, caller: Caller) -> dict[str, Any]:
        sizes = await attempt(index_sizes, limit=15)
        chart = None
        if isinstance(sizes, list) and sizes:
            chart = charts.chart(
                "bar",
                "Index size (bytes)",
                [i.index for i in sizes],
                [[i.size_bytes for i in sizes]],
            )
        advice = request.query_params.get("advice") == "1"
        return {
            "unused": await attempt(unused_indexes, max_scans=0, min_size_bytes=0),
            "duplicates": await attempt(duplicate_indexes),
            "sizes": sizes,
            "chart": chart,
            "advice": await _advice(runtime) if advice else None,
        }

    @page("/space", "space")
    async def space(request: Request, caller: Caller) -> dict[str, Any]:
        tables = await attempt(table_sizes, limit=15)
        chart = None
        if isinstance(tables, list) and tables:
            labels = [t.table for t in tables]
            chart = charts.chart(
                "bar", "", labels,
                [[t.heap_bytes for t in tables], [t.toast_bytes for t in tables],
                 [t.index_bytes for t in tables]],
                names=["heap", "TOAST", "indexes"], stacked=True,
            )  # fmt: skip
        series = await snapshots()
        growth = await attempt(history.growth, limit=20) if isinstance(series, list) else None
        return {
            "tables": tables,
            "chart": chart,
            "size_chart": charts.size_chart(series),
            "snapshots": series,
            "growth": growth,
        }

    @page("/connections", "connections")
    async def connections(request: Request, caller: Caller) -> dict[str, Any]:
        usage = await runtime.call(connection_usage)
        chart = charts.chart(
            "doughnut", "Connections", list(usage.by_state) or ["none"],
            [list(usage.by_state.values()) or [0]],
        )  # fmt: skip
        return {
            "usage": usage,
            "chart": chart,
            "sessions": await runtime.call(sessions),
            "blocked": await runtime.call(blocked_queries),
        }

    @page("/maintenance", "maintenance")
    async def maintenance_page(request: Request, caller: Caller) -> dict[str, Any]:
        tables = await runtime.call(user_tables)
        ranked = sorted(tables, key=lambda t: t.dead_tuples, reverse=True)[:15]
        chart = None
        if ranked:
            chart = charts.chart(
                "bar", "Dead tuples", [t.name for t in ranked], [[t.dead_tuples for t in ranked]]
            )
        return {"tables": tables, "chart": chart, "jobs": _jobs(runtime, "maintenance")}

    @page("/backups", "backups")
    async def backups_page(request: Request, caller: Caller) -> dict[str, Any]:
        from pgwarden.backup.catalog import list_backups
        from pgwarden.urls import parse_database_url

        try:
            storage = runtime.storage()
            database = parse_database_url(runtime.settings.database_url or "").database
            found: Any = await runtime.in_thread(list_backups, storage, database=database)
        except PgwardenError as error:
            found = error_message(error)
        chart = None
        if isinstance(found, list) and found:
            ordered = list(reversed(found))
            chart = charts.chart(
                "bar", "Backup size (bytes)",
                [f"{b.started_at:%Y-%m-%d %H:%M:%S}" for b in ordered], [[b.size for b in ordered]],
            )  # fmt: skip
        jobs = [job for job in runtime.jobs.list() if job.kind in ("backup", "verify", "restore")]
        return {
            "pitr": await unless_failing(runtime.in_thread(pitr_window, runtime)),
            "backups": found,
            "chart": chart,
            "jobs": jobs,
            "running": any(job.status == "running" for job in jobs),
        }

    # -- forms ---------------------------------------------------------------------

    @action("/backups/create", "admin", "backups")
    async def create_backup_form(request: Request, caller: Caller, form: dict[str, str]) -> str:
        job = await start_backup(runtime, caller, request)
        return f"backup started: job {job.id}"

    @action("/backups/verify", "admin", "backups")
    async def verify_form(request: Request, caller: Caller, form: dict[str, str]) -> str:
        job = await start_verify(runtime, caller, request, backup_id_of(form))
        return f"verify started: job {job.id}"

    @action("/backups/restore", "admin", "backups")
    async def restore_form(request: Request, caller: Caller, form: dict[str, str]) -> str:
        body = validated(RestoreRequest, {"database": form.get("database", "")})
        job = await start_restore(runtime, caller, request, backup_id_of(form), body)
        return f"restore started: job {job.id}"

    @action("/sessions/signal", "operate", "connections")
    async def signal_form(request: Request, caller: Caller, form: dict[str, str]) -> str:
        pid = form.get("pid", "")
        what = form.get("action", "")
        if not pid.isdigit() or not 0 < int(pid) < 2**31 or what not in ("cancel", "terminate"):
            raise UserError("the form named no session or action.", hint="Reload the page.")
        result = await signal_session(runtime, caller, request, int(pid), what, SignalRequest())
        return f"{what} of pid {pid}: {'delivered' if result.delivered else 'not delivered'}"

    @action("/maintenance/run", "operate", "maintenance")
    async def maintenance_form(request: Request, caller: Caller, form: dict[str, str]) -> str:
        table = form.get("table", "").strip()
        body = validated(
            MaintenanceRequest,
            {
                "command": form.get("command", "vacuum"),
                "tables": [table] if table else None,
                "analyze": form.get("analyze") == "on",
            },
        )
        job = await start_maintenance(runtime, caller, request, body)
        return f"{body.command} started: job {job.id}"

    @action("/space/snapshot", "operate", "space")
    async def snapshot_form(request: Request, caller: Caller, form: dict[str, str]) -> str:
        taken = await take_snapshot_audited(runtime, caller, request, None)
        return f"snapshot {taken.id} taken"


def _jobs(runtime: Runtime, kind: str) -> list[Any]:
    return [job for job in runtime.jobs.list() if job.kind == kind]


async def _advice(runtime: Runtime) -> Any:
    from pgwarden.advise import advise_indexes

    async def compute() -> Any:
        return await runtime.call(advise_indexes)

    try:
        return await runtime.cached("advice-page", runtime.options.advice_ttl_s, compute)
    except (PgwardenError, CheckSkipped) as error:
        return error_message(error)
