"""``pgwarden audit-orm``: relationships and their N+1 risk."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.text import Text

from pgwarden.cli.context import Context, pass_context
from pgwarden.cli.render import dump_json, table
from pgwarden.observe.relationships import audit_relationships, import_models

__all__ = ["audit_orm"]

_RISKS = ["high", "medium", "low", "none"]
_COLOURS = {"high": "red", "medium": "yellow", "low": "cyan", "none": "green"}


@click.command("audit-orm")
@click.argument("module")
@click.option(
    "--path",
    "paths",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Directory to import MODULE from (repeatable; the working directory is included).",
)
@click.option(
    "--fail-on",
    type=click.Choice(["high", "medium", "low"]),
    default=None,
    help="Exit 1 when a relationship has this risk or a higher one.",
)
@pass_context
def audit_orm(state: Context, module: str, paths: tuple[Path, ...], fail_on: str | None) -> None:
    """List every relationship of MODULE's models with its loader and N+1 risk.

    \b
    Example:
      pgwarden audit-orm myapp.models --fail-on high
    """
    for entry in (*(str(p.resolve()) for p in paths), str(Path.cwd())):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    results = audit_relationships(import_models(module))
    if state.json:
        dump_json(state.console, results)
    else:
        rows = [
            (
                Text(r.risk, style=_COLOURS[r.risk]),
                r.relationship,
                r.direction,
                r.strategy,
                r.suggestion or "",
            )
            for r in results
        ]
        state.console.print(table(["risk", "relationship", "kind", "loads", "suggestion"], rows))
        counts = {risk: sum(1 for r in results if r.risk == risk) for risk in _RISKS}
        state.console.print(
            f"{len(results)} relationships: "
            + ", ".join(f"{counts[risk]} {risk}" for risk in _RISKS if counts[risk])
        )
    if fail_on is not None:
        worst = _RISKS.index(fail_on)
        if any(_RISKS.index(r.risk) <= worst for r in results):
            raise SystemExit(1)
