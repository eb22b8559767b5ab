"""``pgwarden migrations lint``: unsafe statements in migrations, weighed on the live database.

The command is registered under the ``migrations`` group (``cli/migrations.py``) with
``migrations.add_command(lint)``; it needs nothing else from the group.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click
from rich.text import Text

from pgwarden.cli.context import Context, pass_context
from pgwarden.cli.render import dump_json

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from pgwarden.schema.lint import LintConfig, LintFinding, Severity

__all__ = ["lint"]

_SEVERITIES = ("info", "low", "medium", "high")
_COLOURS = {"high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}


@click.command("lint")
@click.argument("targets", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--revision",
    "revisions",
    multiple=True,
    metavar="REV",
    help="Alembic revision to lint (repeatable; default: all).",
)
@click.option(
    "--fail-on",
    type=click.Choice(_SEVERITIES),
    default=None,
    help="Exit 1 on a finding this severe or worse (default: [lint] fail_on, else medium).",
)
@click.option(
    "--show",
    "show",
    type=click.Choice(_SEVERITIES),
    default="low",
    show_default=True,
    help="Show findings this severe or worse (info: also what pgwarden found safe).",
)
@click.option(
    "--disable",
    "disabled",
    multiple=True,
    metavar="RULE",
    help="Leave out a rule (repeatable), as `disabled` in [lint] does.",
)
@click.option(
    "--assume-in-transaction/--no-assume-in-transaction",
    default=None,
    help="SQL files run inside a transaction (default: [lint], else no).",
)
@click.option(
    "--without-squawk", is_flag=True, help="Run pgwarden's own rules alone, without squawk's."
)
@click.option(
    "--sample-seconds",
    type=click.FloatRange(0),
    default=None,
    help="With a database: how long to count each table's writes (default 1).",
)
@pass_context
def lint(
    state: Context,
    targets: tuple[Path, ...],
    revisions: tuple[str, ...],
    fail_on: str | None,
    show: str,
    disabled: tuple[str, ...],
    assume_in_transaction: bool | None,
    without_squawk: bool,
    sample_seconds: float | None,
) -> None:
    """Find the statements of migrations that lock, rewrite or break a live table.

    TARGETS are SQL files, directories of them, an alembic.ini or an Alembic script
    directory (default: ./alembic.ini). Each Alembic revision is rendered to SQL offline
    and each finding names its file and the line of the op call. With --database-url
    (or DATABASE_URL), each finding is weighed against its table in that database: its
    rows, size, writes per second and the sessions holding locks on it now. Nothing is
    written.

    \b
    Example:
      pgwarden migrations lint alembic.ini --fail-on high
    """
    from pgwarden.schema.lint import at_least, load_lint_config, squawk_version

    config = load_lint_config(state.config_file).with_options(
        fail_on=fail_on,
        disabled=disabled or None,
        assume_in_transaction=assume_in_transaction,
        squawk=False if without_squawk else None,
        sample_seconds=sample_seconds,
    )
    paths = list(targets) or [Path("alembic.ini")]
    url = state.settings.database_url
    if url:
        with state.connect() as conn:
            findings = _lint(paths, revisions, conn=conn, config=config)
    else:
        findings = _lint(paths, revisions, conn=None, config=config)
    shown = [f for f in findings if at_least(f.severity, cast("Severity", show))]
    squawk = squawk_version() if config.squawk else None
    failed = any(at_least(f.severity, config.fail_on) for f in findings)
    if state.json:
        counts = {level: sum(1 for f in findings if f.severity == level) for level in _SEVERITIES}
        dump_json(
            state.console,
            {
                "findings": shown,
                "counts": counts,
                "squawk": squawk,
                "live": bool(url),
                "fail_on": config.fail_on,
                "failed": failed,
            },
        )
    else:
        _render(state, shown, findings, squawk=squawk, live=bool(url))
    if failed:
        raise SystemExit(1)


def _lint(
    paths: Sequence[Path],
    revisions: Sequence[str],
    *,
    conn: Connection | None,
    config: LintConfig,
) -> list[LintFinding]:
    from pgwarden.schema.lint import LintTargetInvalid, lint_files, lint_revisions

    findings: list[LintFinding] = []
    sql = [p for p in paths if not _is_alembic(p)]
    if sql:
        findings += lint_files(sql, conn=conn, config=config)
    for path in paths:
        if _is_alembic(path):
            findings += lint_revisions(path, conn=conn, config=config, revisions=revisions or None)
    if revisions and not any(_is_alembic(p) for p in paths):
        raise LintTargetInvalid("--revision needs an alembic.ini or an Alembic script directory.")
    return findings


def _is_alembic(path: Path) -> bool:
    return path.suffix == ".ini" or (path.is_dir() and (path / "versions").is_dir())


def _render(
    state: Context,
    shown: list[LintFinding],
    findings: list[LintFinding],
    *,
    squawk: str | None,
    live: bool,
) -> None:
    def print_(*parts: object) -> None:  # unwrapped: a place (file:line) stays whole
        state.console.print(*parts, soft_wrap=True)

    for finding in shown:
        print_(
            Text.assemble(
                (f"{finding.severity.upper():<6}", _COLOURS[finding.severity]),
                " ",
                (finding.rule, "bold"),
                f"  {finding.where}",
            )
        )
        print_(Text(f"  {finding.message}"))
        if finding.statement:
            print_(Text(f"  statement: {finding.statement}", style="dim"))
        for note in finding.notes:
            print_(Text(f"  note: {note}"))
        lines = finding.fix.splitlines()
        print_(Text(f"  fix: {lines[0]}", style="green"))
        for line in lines[1:]:
            print_(Text(f"       {line}", style="green"))
    counts = [f"{sum(1 for f in findings if f.severity == s)} {s}" for s in reversed(_SEVERITIES)]
    hidden = len(findings) - len(shown)
    print_(
        f"{len(findings)} findings: {', '.join(counts)}"
        + (f" ({hidden} below --show not listed)" if hidden else "")
        + f"; squawk {squawk if squawk else 'not run'}"
        + ("; weighed on the live database." if live else "; no database given (static).")
    )
