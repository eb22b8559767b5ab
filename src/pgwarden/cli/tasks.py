"""``pgwarden schedule``, ``pgwarden worker``, ``pgwarden beat`` and ``pgwarden fleet``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click
from rich.text import Text

from pgwarden.cli.context import Context, pass_context
from pgwarden.cli.render import dump_json, table
from pgwarden.tasks.config import load_fleet
from pgwarden.tasks.schedule import effective_schedule

__all__ = ["beat", "fleet", "schedule", "worker"]


@click.command()
@click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="NAME",
    help="Show this target only (repeatable; default: every target).",
)
@click.option(
    "--next",
    "count",
    type=click.IntRange(1, 100),
    default=1,
    show_default=True,
    help="How many next run times to show per job.",
)
@click.option("--all", "show_off", is_flag=True, help="List the jobs that are off too.")
@pass_context
def schedule(state: Context, targets: tuple[str, ...], count: int, show_off: bool) -> None:
    """Print each target's jobs, their cron expressions and next run times (UTC).

    The targets are the [targets.NAME] tables of the config file.

    \b
    Example:
      pgwarden --config pgwarden.toml schedule --next 3
    """
    fleet = load_fleet(state.config_file)
    jobs = effective_schedule(fleet, targets=targets or None, count=count)
    if not show_off:
        jobs = [job for job in jobs if job.enabled]
    if state.json:
        dump_json(state.console, {"targets": sorted({j.target for j in jobs}), "jobs": jobs})
        return
    rows = [
        (
            job.target,
            job.task,
            job.cron,
            "\n".join(f"{moment:%Y-%m-%d %H:%M}" for moment in job.next_runs) or "-",
            ", ".join(job.windows) or "",
        )
        for job in jobs
    ]
    if not rows:
        state.console.print(Text("No job is scheduled."))
        return
    state.console.print(
        table(["target", "task", "cron", "next run (UTC)", "windows"], rows, title="Schedule")
    )


def _app(state: Context) -> Any:
    from pgwarden.tasks.app import create_app
    from pgwarden.tasks.broker import prepare_broker

    app = create_app(state.config_file, settings=state.settings)
    prepare_broker(app.conf.broker_url)
    return app


@click.command()
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, 256),
    default=None,
    help="Jobs run at once, each in a process of its own (default: the number of CPUs).",
)
@click.option("--name", "-n", default=None, help="The worker's name (default: celery@HOST).")
@click.option(
    "--pool",
    type=click.Choice(["prefork", "solo", "threads"]),
    default="prefork",
    show_default=True,
    help="How jobs run: child processes, in the worker itself, threads.",
)
@click.option(
    "--loglevel", "-l", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"],
    case_sensitive=False), default="INFO", show_default=True, help="Celery's log level.",
)  # fmt: skip
@pass_context
def worker(
    state: Context, concurrency: int | None, name: str | None, pool: str, loglevel: str
) -> None:
    """Run a Celery worker for the jobs of the config file's targets.

    Start as many as the fleet needs, on any hosts sharing the broker; `pgwarden beat`
    (one, anywhere) sends them the jobs on schedule.

    \b
    Example:
      pgwarden --config pgwarden.toml worker --concurrency 2
    """
    app = _app(state)
    argv = ["worker", f"--loglevel={loglevel.upper()}", f"--pool={pool}", "--without-gossip"]
    argv += ["--without-mingle", f"--queues={app.conf.task_default_queue}"]
    if concurrency is not None:
        argv.append(f"--concurrency={concurrency}")
    if name is not None:
        argv.append(f"--hostname={name}")
    app.worker_main(argv)


@click.command()
@click.option(
    "--loglevel", "-l", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"],
    case_sensitive=False), default="INFO", show_default=True, help="Celery's log level.",
)  # fmt: skip
@pass_context
def beat(state: Context, loglevel: str) -> None:
    """Send each target's jobs to the workers on schedule; reload the config when it changes.

    Run one beat per fleet.

    \b
    Example:
      pgwarden --config pgwarden.toml beat
    """
    app = _app(state)
    app.start(["beat", f"--loglevel={loglevel.upper()}"])


@click.group()
def fleet() -> None:
    """See the targets of the config file and how their scheduled jobs went.

    \b
    Example:
      pgwarden --config pgwarden.toml fleet status --json
    """


def _when(moment: dt.datetime | None) -> str:
    return "-" if moment is None else f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M}"


@fleet.command("status")
@click.option(
    "--target", "targets", multiple=True, metavar="NAME",
    help="Show this target only (repeatable; default: every target).",
)  # fmt: skip
@pass_context
def fleet_status_command(state: Context, targets: tuple[str, ...]) -> None:
    """Print per target the last success and failure of each job, the newest verified
    backup, the window the backups cover and the open alerts. Exits 1 if any is unhealthy.

    \b
    Example:
      pgwarden --config pgwarden.toml fleet status --json
    """
    from pgwarden.tasks.fleet import fleet_status

    statuses = fleet_status(load_fleet(state.config_file), state.settings, targets=targets or None)
    if state.json:
        dump_json(state.console, {"targets": statuses})
    else:
        jobs = [
            (
                s.target,
                j.job,
                _when(j.last_success),
                _when(j.last_failure),
                (j.last_error or "")[:80] if j.failing else "",
            )
            for s in statuses
            for j in s.jobs
            if j.cron != "off" or j.last_success or j.last_failure
        ]
        state.console.print(
            table(["target", "job", "last success", "last failure", "error"], jobs, title="Jobs")
        )
        rows = [
            (
                s.target,
                s.newest_verified or "-",
                f"{_when(s.recoverable_from)} .. {_when(s.recoverable_to)}"
                if s.complete_backups
                else "-",
                "\n".join([i.message for i in s.incidents] + s.problems) or "ok",
            )
            for s in statuses
        ]
        state.console.print(
            table(
                ["target", "newest verified backup", "recoverable (UTC)", "open alerts"],
                rows,
                title="Targets",
            )
        )
    if not all(s.healthy for s in statuses):
        click.get_current_context().exit(1)
