"""``pgwarden doctor``: every health check, grouped by severity, each with its fix."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.text import Text

from pgwarden.cli.context import Context, pass_context
from pgwarden.cli.render import dump_json, table
from pgwarden.insight.doctor import CHECKS, SEVERITIES, DoctorReport, doctor_server, threshold_names
from pgwarden.insight.findings import Severity
from pgwarden.insight.thresholds import parse_thresholds

__all__ = ["doctor_command"]

_COLOURS = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


@click.command("doctor")
@click.option(
    "--check",
    "checks",
    multiple=True,
    metavar="NAME",
    help="Run only this check, or the checks of this area (repeatable).",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="CHECK.THRESHOLD=VALUE",
    help="Override a threshold, e.g. unused_indexes.min_size_bytes=0 (repeatable).",
)
@click.option(
    "--fail-on",
    type=click.Choice(["warning", "critical"]),
    default=None,
    help="Exit 1 when a finding has this severity or a more serious one (for CI).",
)
@click.option(
    "--all-databases",
    is_flag=True,
    help="Check every database of the server that accepts connections.",
)
@click.option("--list", "list_checks", is_flag=True, help="List the checks and their thresholds.")
@pass_context
def doctor_command(
    state: Context,
    checks: tuple[str, ...],
    settings: tuple[str, ...],
    fail_on: Severity | None,
    all_databases: bool,
    list_checks: bool,
) -> None:
    """Run the health checks and print what they found, most serious first.

    Each finding says what is wrong, why it matters and the SQL or setting that fixes
    it. A check that cannot run (a missing extension or privilege) says why. The run is
    read-only and gives up on a lock after 2 seconds rather than wait behind it.

    \b
    Examples:
      pgwarden doctor
      pgwarden doctor --check indexes --set unused_indexes.min_size_bytes=0
      pgwarden --json doctor --fail-on warning
    """
    if list_checks:
        _list(state)
        return
    server = doctor_server(
        lambda database: state.engine(database=database),
        checks=checks or None,
        thresholds=parse_thresholds(settings),
        all_databases=all_databases,
    )
    if state.json:
        dump_json(
            state.console,
            {"reports": server.reports, "counts": server.counts, "unreachable": server.unreachable},
        )
    else:
        for report in server.reports:
            _print(state.console, report, show_database=all_databases)
        for database in server.unreachable:
            state.console.print(Text.assemble(("not checked", "yellow"), " ", database.error))
    if server.failed or (fail_on and server.findings_at(fail_on)):
        raise SystemExit(1)


def _list(state: Context) -> None:
    rows: list[dict[str, Any]] = [
        {
            "name": check.name,
            "area": check.area,
            "scope": check.scope,
            "summary": check.summary,
            "thresholds": threshold_names(check),
        }
        for check in CHECKS
    ]
    if state.json:
        dump_json(state.console, {"checks": rows})
        return
    state.console.print(
        table(
            ["check", "area", "what it looks for", "thresholds"],
            (
                (
                    row["name"],
                    row["area"],
                    row["summary"],
                    ", ".join(f"{k}={v!r}" for k, v in row["thresholds"].items()),
                )
                for row in rows
            ),
        )
    )


def _print(console: Console, report: DoctorReport, *, show_database: bool) -> None:
    if show_database:
        console.print(Text(f"database {report.database}", style="bold"))
    for severity in SEVERITIES:
        findings = [f for f in report.findings if f.severity == severity]
        if not findings:
            continue
        colour = _COLOURS[severity]
        console.print(Text(f"{severity} ({len(findings)})", style=colour))
        for finding in findings:
            console.print(Text.assemble("  ", (severity, colour), " ", finding.what))
            console.print(Text.assemble("    ", ("why:", "dim"), " ", finding.why))
            if finding.fix:
                console.print(Text.assemble("    ", ("fix:", "dim"), " ", finding.fix))
    for result in report.skipped:
        console.print(Text.assemble(("skipped", "dim"), f" {result.check}: {result.skipped or ''}"))
    for result in report.failed:
        console.print(
            Text.assemble(("failed", "bold red"), f" {result.check}: {result.error or ''}")
        )
    counts = ", ".join(f"{report.counts[s]} {s}" for s in SEVERITIES)
    ran = len(report.results) - len(report.skipped) - len(report.failed)
    verdict = Text("no findings", style="green") if not report.findings else Text(counts)
    console.print(
        Text.assemble(
            verdict,
            f"; {ran} checks run, {len(report.skipped)} skipped, "
            f"{len(report.failed)} failed, in {report.duration_s:.2f} s "
            f"(PostgreSQL {report.server_version}, database {report.database})",
        )
    )
