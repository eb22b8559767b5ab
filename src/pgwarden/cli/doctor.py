"""``pgwarden doctor``: every health check, grouped by severity, each with its fix."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import click
from rich.console import Console
from rich.text import Text
from sqlalchemy import text

from pgwarden.cli.context import Context, pass_context
from pgwarden.cli.render import dump_json, table
from pgwarden.errors import ConnectionFailed, UserError
from pgwarden.insight.doctor import CHECKS, SEVERITIES, DoctorReport, doctor, threshold_names
from pgwarden.insight.findings import Severity

__all__ = ["doctor_command"]

_KINDS = {bool: "true or false", int: "a whole number", float: "a number"}

_COLOURS = {"critical": "bold red", "warning": "yellow", "info": "cyan"}

# Databases a run over a whole server visits: those that accept connections.
_DATABASES = text(
    """
SELECT datname
FROM pg_database
WHERE datallowconn
  AND NOT datistemplate
ORDER BY datname
"""
)


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
    thresholds = _thresholds(settings)
    reports, unreachable = _run(state, checks or None, thresholds, all_databases)
    if state.json:
        dump_json(
            state.console,
            {"reports": reports, "counts": _totals(reports), "unreachable": unreachable},
        )
    else:
        for report in reports:
            _print(state.console, report, show_database=all_databases)
        for database in unreachable:
            state.console.print(Text.assemble(("not checked", "yellow"), " ", database["error"]))
    failed = any(report.failed for report in reports)
    if failed or (fail_on and any(report.findings_at(fail_on) for report in reports)):
        raise SystemExit(1)


def _run(
    state: Context,
    checks: tuple[str, ...] | None,
    thresholds: dict[str, dict[str, Any]],
    all_databases: bool,
) -> tuple[list[DoctorReport], list[dict[str, str]]]:
    unreachable: list[dict[str, str]] = []
    reports = [_doctor(state, None, checks, thresholds, ("database", "cluster"))]
    if all_databases:
        with state.connect() as conn:
            databases = conn.execute(_DATABASES).scalars().all()
        for database in databases:
            if database == reports[0].database:
                continue
            # Server-wide checks ran once, on the first database.
            try:
                reports.append(_doctor(state, database, checks, thresholds, ("database",)))
            except ConnectionFailed as error:
                # Dropped since it was listed, or closed to this role: say so, go on.
                unreachable.append({"database": database, "error": error.message})
    return reports, unreachable


def _doctor(
    state: Context,
    database: str | None,
    checks: tuple[str, ...] | None,
    thresholds: dict[str, dict[str, Any]],
    scopes: tuple[str, ...],
) -> DoctorReport:
    with state.connect(database=database) as conn:
        return doctor(conn, checks=checks, thresholds=thresholds, scopes=scopes)


def _thresholds(settings: Iterable[str]) -> dict[str, dict[str, Any]]:
    by_name = {check.name: check for check in CHECKS}
    thresholds: dict[str, dict[str, Any]] = {}
    for setting in settings:
        target, equals, raw = setting.partition("=")
        check, dot, name = target.partition(".")
        if not (equals and dot and check and name):
            raise UserError(
                f"--set {setting!r} is not CHECK.THRESHOLD=VALUE.",
                hint="For example: --set unused_indexes.min_size_bytes=0",
            )
        default = threshold_names(by_name[check]).get(name) if check in by_name else None
        thresholds.setdefault(check, {})[name] = _parse(raw, default, setting)
    return thresholds


def _parse(raw: str, default: Any, setting: str) -> Any:
    kind = type(default)
    try:
        if kind is bool:
            if raw.lower() not in {"true", "false", "on", "off", "1", "0"}:
                raise ValueError(raw)
            return raw.lower() in {"true", "on", "1"}
        if kind is int:
            return int(raw.replace("_", ""))
        if kind is float:
            return float(raw)
    except ValueError:
        raise UserError(
            f"--set {setting!r}: {raw!r} is not {_KINDS.get(kind, kind.__name__)}.",
            hint=f"The default of this threshold is {default!r}.",
        ) from None
    return raw


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


def _totals(reports: list[DoctorReport]) -> dict[str, int]:
    return {s: sum(report.counts.get(s, 0) for report in reports) for s in SEVERITIES}


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
