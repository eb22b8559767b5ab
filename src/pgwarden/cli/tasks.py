"""``pgwarden schedule``, ``pgwarden worker``, ``pgwarden beat`` and ``pgwarden fleet``."""

from __future__ import annotations

import click
from rich.text import Text

from pgwarden.cli.context import Context, pass_context
from pgwarden.cli.render import dump_json, table
from pgwarden.tasks.config import load_fleet
from pgwarden.tasks.schedule import effective_schedule

__all__ = ["schedule"]


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
