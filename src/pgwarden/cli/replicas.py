"""``pgwarden replicas``: can each read replica serve reads now, and how far behind is it."""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from pgwarden.cli.context import Context, pass_context
from pgwarden.cli.render import dump_json
from pgwarden.db.engines import create_engine
from pgwarden.errors import ConfigError

__all__ = ["replicas"]


@click.command()
@click.option(
    "--replica-url", "replica_urls", multiple=True, metavar="URL",
    help="A replica to check (repeatable); default: each URL of DATABASE_REPLICA_URL.",
)  # fmt: skip
@click.option(
    "--max-lag", default="10s", show_default=True, metavar="DURATION",
    help="Lag over which a replica does not serve reads (10s, 500ms, 2min).",
)  # fmt: skip
@pass_context
def replicas(state: Context, replica_urls: tuple[str, ...], max_lag: str) -> None:
    """Show whether each read replica may serve reads, its lag and replay position.

    Exits 1 when a replica is unreachable or lags over --max-lag. URLs are shown with
    their passwords hidden.

    \b
    Example:
      pgwarden replicas --replica-url postgresql://app:...@db:5432/app --max-lag 5s
    """
    from sqlalchemy.pool import NullPool

    from pgwarden.orm.replicas import ReplicaSet

    urls = list(replica_urls) or state.settings.database_replica_urls()
    if not urls:
        raise ConfigError(
            "no replica to check.",
            hint="Set DATABASE_REPLICA_URL (one URL or several) or pass --replica-url.",
        )

    engines = [
        create_engine(url, settings=state.settings, poolclass=NullPool,
                      application_name="pgwarden-cli")
        for url in urls
    ]  # fmt: skip
    # Checking replicas asks nothing of the primary: without DATABASE_URL the set is
    # built around the first replica, which is never connected to as a primary.
    primary = state.engine() if state.settings.database_url else engines[0]
    found = ReplicaSet(primary, engines, max_lag=max_lag)
    try:
        statuses = found.status()
    finally:
        found.dispose()
    if state.json:
        dump_json(state.console, statuses)
    else:
        table = Table(header_style="bold")
        for name in ("replica", "usable", "lag", "replay LSN", "standby", "why not"):
            table.add_column(name, overflow="fold")
        for status in statuses:
            lag = "-" if status.lag_seconds is None else f"{status.lag_seconds:.1f} s"
            standby = "-" if status.in_recovery is None else ("yes" if status.in_recovery else "no")
            if status.paused:
                standby += " (replay paused)"
            cells = [status.url, "yes" if status.usable else "no", lag,
                     status.replay_lsn or "-", standby, status.reason or ""]  # fmt: skip
            table.add_row(*(Text(cell) for cell in cells))
        state.console.print(table)
    if not all(status.usable for status in statuses):
        raise SystemExit(1)
