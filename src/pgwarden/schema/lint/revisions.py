"""Lint SQL files and Alembic revisions, each revision rendered to SQL offline on its own.

A revision's ``upgrade()`` runs against Alembic's offline (``--sql``) migration context
for PostgreSQL, inside ``BEGIN``/``COMMIT`` as Alembic renders it (an
``autocommit_block()`` ends and reopens the transaction), so its SQL is exactly what
``alembic upgrade --sql`` prints for it. While it runs, each statement written is traced
back to the line of the revision file that called ``op``: a finding names the revision
file and that line. Ignores in a revision are Python comments: ``# pgwarden: ignore
RULE`` on the ``op`` call (or the comment lines right above it), ``# pgwarden:
ignore-file RULE`` anywhere for the whole revision.
"""

from __future__ import annotations

import io
import sys
import tokenize
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from pgwarden._extras import importing_extra
from pgwarden.schema.lint._script import ignores_in
from pgwarden.schema.lint.config import LintConfig
from pgwarden.schema.lint.errors import LintTargetInvalid
from pgwarden.schema.lint.findings import LintFinding
from pgwarden.schema.lint.linter import Origin, lint_script

__all__ = ["lint_files", "lint_revisions", "render_revision"]


def lint_files(
    paths: Iterable[str | Path], *, conn: Connection | None = None, config: LintConfig | None = None
) -> list[LintFinding]:
    """Return the findings of SQL files (a directory means its ``*.sql``, sorted by name)."""
    config = config or LintConfig()
    findings: list[LintFinding] = []
    for path in _sql_files(paths):
        try:
            sql = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise LintTargetInvalid(
                f"cannot read {path}: {exc}.", hint="Give readable UTF-8 SQL files."
            ) from None
        findings += lint_script(sql, Origin(file=str(path)), conn=conn, config=config)
    return findings


def _sql_files(paths: Iterable[str | Path]) -> list[Path]:
    found = []
    for given in map(Path, paths):
        if given.is_dir():
            found += sorted(given.glob("*.sql"))
        elif given.is_file():
            found.append(given)
        else:
            raise LintTargetInvalid(
                f"{given} does not exist.", hint="Name SQL files or directories of them."
            )
    return found


def lint_revisions(
    location: str | Path,
    *,
    conn: Connection | None = None,
    config: LintConfig | None = None,
    revisions: Sequence[str] | None = None,
) -> list[LintFinding]:
    """Return the findings of Alembic revisions, base first.

    ``location`` is an ``alembic.ini`` or the script directory (the folder holding
    ``versions/``); ``revisions`` picks some by id (default: all). A revision that
    cannot be rendered offline (it reads the database through ``op.get_bind()``) is a
    ``render-failed`` finding: its statements were not checked, and the report says so.
    """
    # A revision's SQL says BEGIN and COMMIT itself: assuming a transaction around it
    # would make its BEGIN a nested one.
    config = replace(config or LintConfig(), assume_in_transaction=False)
    with importing_extra(
        "lint", "linting Alembic revisions needs {package}", {"alembic": "alembic"}
    ):
        from alembic.script import ScriptDirectory
    scripts, paths, alembic_config = _script_directory(Path(location), ScriptDirectory)
    wanted = set(revisions or ())
    added = [p for p in paths if p not in sys.path]
    sys.path[:0] = added
    try:
        ordered = list(reversed(list(scripts.walk_revisions())))
    except Exception as exc:  # a revision that does not import, a broken history
        raise LintTargetInvalid(
            f"the revisions in {location} cannot be loaded: {type(exc).__name__}: {exc}",
            hint="Run lint where the revisions' imports resolve (prepend_sys_path in alembic.ini).",
        ) from None
    finally:
        for path in added:
            sys.path.remove(path)
    unknown = wanted - {script.revision for script in ordered}
    if unknown:
        raise LintTargetInvalid(
            f"no revision {', '.join(sorted(unknown))} in {location}.",
            hint="Give revision ids as `alembic history` lists them.",
        )
    findings: list[LintFinding] = []
    for script in ordered:
        if wanted and script.revision not in wanted:
            continue
        script_path = Path(script.path)
        try:
            sql, place = render_revision(script.module, script_path, scripts, alembic_config)
        except Exception as exc:  # any failure of the revision's own code
            findings.append(_render_failed(script_path, script.revision, exc))
            continue
        origin = Origin(
            file=str(script_path),
            revision=script.revision,
            place=place,
            ignores=_file_ignores(script_path),
        )
        findings += lint_script(sql, origin, conn=conn, config=config)
    return findings


def _script_directory(location: Path, script_directory: Any) -> tuple[Any, list[str], Any]:
    """Return the script directory, the paths its revisions import from, its config."""
    from alembic.config import Config
    from alembic.util.exc import CommandError

    try:
        if location.is_file():
            config = Config(str(location))
            prepend = (config.get_main_option("prepend_sys_path") or "").replace(",", " ").split()
            here = location.resolve().parent
            paths = [str((here / item).resolve()) for item in prepend]
            return script_directory.from_config(config), paths, config
        if (location / "versions").is_dir():
            return script_directory(str(location)), [], Config()
    except CommandError as exc:
        raise LintTargetInvalid(
            f"{location}: {exc}", hint="Give an alembic.ini or a script directory."
        ) from None
    raise LintTargetInvalid(
        f"{location} is neither an alembic.ini nor an Alembic script directory.",
        hint="Give the alembic.ini, or the folder holding versions/.",
    )


class _Recorder(io.StringIO):
    """The offline output, remembering which line of the revision wrote each part."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = str(path)
        self.starts: list[int] = []
        self.lines: list[int] = []

    def write(self, text: str) -> int:
        frame = sys._getframe(1)
        line = 0
        while frame is not None:
            if frame.f_code.co_filename == self.path:
                line = frame.f_lineno
                break
            frame = frame.f_back  # type: ignore[assignment]
        self.starts.append(self.tell())
        self.lines.append(line)
        return super().write(text)


def render_revision(module: Any, path: Path, scripts: Any, alembic_config: Any) -> tuple[str, Any]:
    """Return a revision's upgrade as offline SQL, and its offset-to-line function.

    ``alembic.context`` is an offline environment while it runs, as under ``--sql``:
    ``context.is_offline_mode()`` is true and ``context.config`` is the project's.
    """
    from alembic.operations import Operations
    from alembic.runtime.environment import EnvironmentContext

    recorder = _Recorder(path)
    with EnvironmentContext(alembic_config, scripts, as_sql=True) as environment:
        environment.configure(
            dialect_name="postgresql",
            output_buffer=recorder,
            literal_binds=True,
            as_sql=True,
        )
        context = environment.get_context()
        context.impl.emit_begin()
        with Operations.context(context):
            module.upgrade()
        context.impl.emit_commit()
    comments = _comments(path)
    statements = _statement_spans(path)

    def place(offset: int) -> tuple[int, frozenset[str]]:
        at = bisect_right(recorder.starts, offset) - 1
        line = recorder.lines[at] if at >= 0 else 0
        return line, _ignores_at(line, comments, statements)

    return recorder.getvalue(), place


def _comments(path: Path) -> dict[int, str]:
    with path.open("rb") as handle:
        return {
            token.start[0]: token.string
            for token in tokenize.tokenize(handle.readline)
            if token.type == tokenize.COMMENT
        }


def _statement_spans(path: Path) -> list[tuple[int, int]]:
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (n.lineno, n.end_lineno or n.lineno)
        for n in ast.walk(tree)
        if isinstance(n, ast.stmt)
        and not isinstance(n, ast.FunctionDef | ast.With | ast.If | ast.For | ast.Try)
    ]


def _ignores_at(
    line: int, comments: dict[int, str], spans: list[tuple[int, int]]
) -> frozenset[str]:
    if line <= 0:
        return frozenset()
    first, last = min(
        ((a, b) for a, b in spans if a <= line <= b),
        default=(line, line),
        key=lambda s: s[1] - s[0],
    )
    lines = list(range(first, last + 1))
    above = first - 1
    while above in comments:  # the comment block right above the call
        lines.append(above)
        above -= 1
    found: set[str] = set()
    for number in lines:
        parsed = ignores_in(comments.get(number, ""))
        if parsed is not None and parsed[0] == "ignore":
            found |= parsed[1]
    return frozenset(found)


def _file_ignores(path: Path) -> frozenset[str]:
    found: set[str] = set()
    for comment in _comments(path).values():
        parsed = ignores_in(comment)
        if parsed is not None and parsed[0] == "ignore-file":
            found |= parsed[1]
    return frozenset(found)


def _render_failed(path: Path, revision: str, exc: Exception) -> LintFinding:
    return LintFinding(
        rule="render-failed",
        severity="medium",
        message=f"revision {revision} cannot be rendered offline ({type(exc).__name__}: {exc}); "
        "its statements were not checked.",
        fix="Keep upgrade() free of reads from the database (op.get_bind()), or lint its SQL file.",
        file=str(path),
        line=1,
        column=1,
        statement="",
        revision=revision,
    )
