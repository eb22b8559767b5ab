"""``python -m learnhub``: migrate, seed, run the workload, or all of it as a demo."""

from __future__ import annotations

import sys

import click
import sqlalchemy as sa
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from pgwarden.db.engines import connect, create_engine
from pgwarden.errors import PgwardenError
from pgwarden.urls import parse_database_url, redact_url

console = Console(highlight=False)


def _url(url: str | None) -> str:
    import os

    chosen = url or os.environ.get("DATABASE_URL")
    if not chosen:
        raise click.UsageError("give --database-url or set DATABASE_URL")
    return parse_database_url(chosen).render_as_string(hide_password=False)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=console, transient=True,
    )  # fmt: skip


@click.group()
def main() -> None:
    """learnhub, the reference app: migrate, seed, workload, demo."""


@main.command()
@click.option("--database-url", default=None, help="Default: DATABASE_URL.")
@click.option("--revision", default="head", show_default=True)
def migrate(database_url: str | None, revision: str) -> None:
    """Upgrade the database to REVISION, as the owner of its tables.

    The migrations also create the API's login role (learnhub_app), with its password
    from LEARNHUB_APP_PASSWORD, else from a file made on first use (never printed).
    """
    from learnhub.app_role import app_password
    from learnhub.migrate import upgrade

    upgrade(_url(database_url), revision, app_password=app_password(create=True))
    console.print(f"migrated to {revision}")


@main.command()
@click.option("--database-url", default=None, help="Default: DATABASE_URL.")
@click.option("--scale", type=float, default=1.0, show_default=True, help="1 is about 55,000 rows.")
@click.option("--seed", "seed_value", type=int, default=0, show_default=True)
@click.option("--dry-run", is_flag=True, help="Print the rows per table; write nothing.")
@click.option("--reset", is_flag=True, help="Empty every learnhub table first.")
def seed(
    database_url: str | None, scale: float, seed_value: int, dry_run: bool, reset: bool
) -> None:
    """Fill the database with deterministic Faker data, loaded with COPY.

    Example: python -m learnhub seed --scale 1 --seed 42
    """
    report = _seed(None if dry_run else _url(database_url), scale, seed_value, dry_run, reset)
    table = Table("table", "rows", title="would load (dry run)" if dry_run else "loaded")
    for name, count in report.counts.items():
        table.add_row(name, f"{count:,}")
    table.add_row("[bold]total", f"[bold]{report.total:,}")
    console.print(table)
    if not dry_run:
        console.print(f"{report.total:,} rows in {report.seconds:.1f} s")


def _seed(url: str | None, scale: float, seed_value: int, dry_run: bool, reset: bool):  # type: ignore[no-untyped-def]
    from learnhub.seed import seed as run_seed

    with _progress() as bar:
        tasks: dict[str, object] = {}

        def progress(table: str, done: int, total: int) -> None:
            if table not in tasks:
                tasks[table] = bar.add_task(table, total=total)
            bar.update(tasks[table], completed=done)  # type: ignore[arg-type]

        return run_seed(
            url or "", scale=scale, seed=seed_value, dry_run=dry_run, reset=reset, progress=progress
        )


@main.command()
@click.option("--database-url", default=None, help="The owner's URL. Default: DATABASE_URL.")
@click.option("--requests", type=click.IntRange(1), default=200, show_default=True)
@click.option("--seed", "seed_value", type=int, default=0, show_default=True)
def workload(database_url: str | None, requests: int, seed_value: int) -> None:
    """Send a mix of REST and GraphQL requests to the app, in-process, as its own role.

    The app connects as LEARNHUB_APP_URL, else as the API's role on the owner's URL.
    """
    import os

    from learnhub.app_role import app_url

    url = os.environ.get("LEARNHUB_APP_URL") or app_url(_url(database_url))
    report = _workload(url, requests, seed_value)
    _print_workload(report)


def _workload(url: str, requests: int, seed_value: int):  # type: ignore[no-untyped-def]
    """Run the workload through the app connected with ``url`` (the API's role)."""
    import asyncio
    import logging

    # The findings are summarised below; one log line per request would bury them.
    logging.getLogger("pgwarden.observe.nplusone").setLevel(logging.ERROR)

    from learnhub.db import make_engine
    from learnhub.workload import run_workload

    async def go():  # type: ignore[no-untyped-def]
        engine = make_engine(url)
        try:
            with _progress() as bar:
                task = bar.add_task("requests", total=requests)
                return await run_workload(
                    engine, requests=requests, seed=seed_value,
                    progress=lambda done, _total: bar.update(task, completed=done),
                )  # fmt: skip
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _print_workload(report) -> None:  # type: ignore[no-untyped-def]
    table = Table("route", "requests", "statements", "per request", title="workload")
    for route, count in report.by_route.most_common():
        statements = report.statements_by_route[route]
        table.add_row(route, str(count), str(statements), f"{statements / count:.1f}")
    console.print(table)
    console.print(
        f"{report.requests} requests, {report.statements} statements in {report.seconds:.1f} s"
    )
    if report.nplusone:
        found = Table("requests", "N+1 found by pgwarden", title="pgwarden.observe")
        for pattern, count in report.nplusone.most_common():
            found.add_row(str(count), pattern)
        console.print(found)
    if report.errors:
        console.print(f"[red]errors:[/] {dict(report.errors)}")


@main.command()
@click.option("--database-url", default=None, help="Server to use (default: DATABASE_URL).")
@click.option("--database", default="learnhub", show_default=True, help="Database to (re)create.")
@click.option("--scale", type=float, default=1.0, show_default=True)
@click.option("--requests", type=click.IntRange(1), default=300, show_default=True)
def demo(database_url: str | None, database: str, scale: float, requests: int) -> None:
    """Recreate DATABASE on the server, migrate, seed, run the workload, and summarise.

    Migrating and seeding run as the server's user (the owner of the tables); the
    workload runs through the API connected as its own role, learnhub_app, which row-level
    security applies to.
    """
    from learnhub.app_role import app_password, app_url
    from learnhub.migrate import upgrade

    server = parse_database_url(_url(database_url))
    target = server.set(database=database).render_as_string(hide_password=False)
    _recreate(server.render_as_string(hide_password=False), database)
    owner = server.username or "?"
    console.print(f"[bold]1.[/] created {redact_url(target)}")
    password = app_password(create=True)
    upgrade(target, app_password=password)
    console.print(f"[bold]2.[/] migrated to head (alembic) as {owner}")
    report = _seed(target, scale, 0, False, False)
    console.print(f"[bold]3.[/] seeded {report.total:,} rows in {report.seconds:.1f} s as {owner}")
    api_url = app_url(target, password=password)
    load = _workload(api_url, requests, 0)
    tenancy = _tenancy(api_url)
    console.print(f"[bold]4.[/] ran the workload through the API as {_role_line(tenancy.role)}")
    _print_workload(load)
    console.print("[bold]5.[/] row-level security at work, through the API")
    _print_tenancy(tenancy)
    _summary(target)
    console.print(f"\nexport DATABASE_URL={redact_url(target)}")


def _tenancy(url: str):  # type: ignore[no-untyped-def]
    import asyncio

    from learnhub.db import make_engine
    from learnhub.tenancy import show_tenancy

    async def go():  # type: ignore[no-untyped-def]
        engine = make_engine(url)
        try:
            return await show_tenancy(engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _role_line(role) -> str:  # type: ignore[no-untyped-def]
    """Return who served the API, and whether row-level security applies to it."""
    traits = [
        "a superuser" if role.superuser else "not a superuser",
        "BYPASSRLS" if role.bypass_rls else "no BYPASSRLS",
        f"owns {role.owned_tables} tables",
    ]
    tables = ", ".join(t.name for t in role.rls_tables) or "no table"
    escapes = ", ".join(t.name for t in role.unprotected)
    verdict = (
        f"[red]row-level security does NOT apply to it on {escapes}[/]"
        if escapes
        else f"row-level security applies to it on {tables}"
    )
    return f"role [bold]{role.role}[/] ({', '.join(traits)}): {verdict}"


def _print_tenancy(tenancy) -> None:  # type: ignore[no-untyped-def]
    table = Table(
        "signed in as",
        "its organisation's content",
        "public content",
        title="GET /api/content?limit=10, the same request",
    )
    for caller, listed in tenancy.lists.items():
        own = [str(id_) for id_, visibility in listed if visibility == "organization"]
        public = [str(id_) for id_, visibility in listed if visibility == "public"]
        table.add_row(caller, ", ".join(own) or "-", ", ".join(public) or "-")
    console.print(table)
    probe = tenancy.probe
    if probe is not None:
        console.print(
            f"organization {probe.asker_org}'s user asking for content {probe.content_id} of "
            f"organization {probe.owner_org}, with X-Org-Id: {probe.owner_org}: "
            f"GET {probe.read_status}, PATCH {probe.edit_status}"
        )


def _recreate(server_url: str, database: str) -> None:
    if not database.replace("_", "").isalnum():
        raise click.BadParameter("use letters, digits and _ only", param_hint="--database")
    engine = create_engine(server_url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with connect(engine) as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
    finally:
        engine.dispose()
    # Statement statistics for pgwarden's doctor and index advisor, where the server
    # preloads the module (the embedded one does).
    target = parse_database_url(server_url).set(database=database)
    engine = create_engine(target, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with connect(engine) as conn:
            preloaded = conn.execute(
                sa.text("SELECT 'pg_stat_statements' = ANY(string_to_array("
                        "current_setting('shared_preload_libraries'), ', '))")
            ).scalar_one()  # fmt: skip
            if preloaded:
                conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
    finally:
        engine.dispose()


def _summary(url: str) -> None:
    engine = create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with connect(engine) as conn:
            # Partitions are counted into their parent: one line for page_views.
            rows = conn.execute(
                sa.text(
                    "SELECT coalesce(parent.relname, s.relname) AS relname,"
                    " sum(s.n_live_tup)::bigint AS n_live_tup,"
                    " sum(pg_total_relation_size(s.relid))::bigint AS bytes,"
                    " count(parent.relname) AS partitions"
                    " FROM pg_stat_user_tables AS s"
                    " LEFT JOIN pg_inherits AS i ON i.inhrelid = s.relid"
                    " LEFT JOIN pg_class AS parent ON parent.oid = i.inhparent"
                    " WHERE s.schemaname = 'public'"
                    " GROUP BY 1 ORDER BY 2 DESC"
                )
            ).all()
    finally:
        engine.dispose()
    table = Table("table", "rows", "size", title="tables")
    for row in rows:
        name = row.relname + (f" ({row.partitions} partitions)" if row.partitions else "")
        table.add_row(name, f"{row.n_live_tup:,}", f"{row.bytes / 1024:,.0f} kB")
    console.print(table)
    console.print(f"{len(rows)} tables, {sum(r.n_live_tup for r in rows):,} rows")


if __name__ == "__main__":
    try:
        main(standalone_mode=True)
    except PgwardenError as exc:
        console.print(f"[bold red]error:[/] {exc.message}")
        if exc.hint:
            console.print(f"[bold]hint:[/] {exc.hint}")
        sys.exit(exc.exit_code)
