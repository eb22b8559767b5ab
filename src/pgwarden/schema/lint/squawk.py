"""Run squawk, the migration linter of the field, and read its violations.

squawk comes with the ``lint`` extra (``pip install 'pgwarden[lint]'``: the PyPI package
``squawk-cli`` ships its compiled binary). It is looked for next to the running Python's
scripts, then on PATH. It runs on the SQL itself, from standard input, with its JSON
reporter and an empty config file of its own, so that a ``.squawk.toml`` lying around
does not change what pgwarden reports: pgwarden's config says which rules run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sysconfig
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pgwarden.errors import NotEnabled
from pgwarden.schema.lint.errors import SquawkFailed

__all__ = ["SquawkViolation", "run_squawk", "squawk_binary", "squawk_version"]

_TIMEOUT = 120  # seconds; squawk lints thousands of lines in milliseconds


@dataclass(frozen=True)
class SquawkViolation:
    """One violation as squawk reports it (``line`` and ``column`` 0-based)."""

    rule: str
    line: int
    column: int
    message: str
    help: str | None
    level: str


def squawk_binary() -> Path | None:
    """Return the squawk program, or None when it is not installed."""
    beside = Path(sysconfig.get_path("scripts")) / "squawk"
    if beside.is_file():
        return beside
    found = shutil.which("squawk")
    return Path(found) if found else None


def _required() -> Path:
    binary = squawk_binary()
    if binary is None:
        raise NotEnabled(
            "the migration linter runs squawk's rules with squawk-cli, which is not installed.",
            hint="Install pgwarden with the lint extra: pip install 'pgwarden[lint]'; or lint "
            "with pgwarden's own rules alone (--without-squawk, or squawk = false in [lint]).",
        )
    return binary


@lru_cache(maxsize=4)
def _version(binary: Path) -> str:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip().removeprefix("squawk ").strip() or "unknown"


def squawk_version() -> str | None:
    """Return the version of the squawk found, or None when there is none."""
    binary = squawk_binary()
    return _version(binary) if binary is not None else None


def run_squawk(
    sql: str,
    *,
    filename: str = "migration.sql",
    pg_version: str | None = None,
    assume_in_transaction: bool = False,
) -> list[SquawkViolation]:
    """Return squawk's violations in ``sql``; raise NotEnabled when squawk is missing."""
    binary = _required()
    with tempfile.TemporaryDirectory(prefix="pgwarden-squawk-") as scratch:
        config = Path(scratch) / "squawk.toml"
        config.write_text("")
        args = [
            str(binary),
            "--reporter",
            "json",
            "--config",
            str(config),
            "--stdin-filepath",
            filename,
        ]
        if pg_version:
            args.append(f"--pg-version={pg_version}")
        if assume_in_transaction:
            args.append("--assume-in-transaction")
        try:
            done = subprocess.run(
                args, input=sql, capture_output=True, text=True, cwd=scratch, timeout=_TIMEOUT
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SquawkFailed(f"squawk could not run: {exc}.") from None
    try:
        report = json.loads(done.stdout or "[]")
    except json.JSONDecodeError:
        report = None
    if not isinstance(report, list) or done.returncode not in (0, 1):
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise SquawkFailed(
            f"squawk exited {done.returncode} without its JSON report"
            + (f": {detail[-1]}" if detail else "."),
            hint="Check the squawk installation (pip install 'pgwarden[lint]').",
        )
    return [
        SquawkViolation(
            rule=str(item.get("rule_name")),
            line=int(item.get("line") or 0),
            column=int(item.get("column") or 0),
            message=str(item.get("message") or ""),
            help=item.get("help"),
            level=str(item.get("level") or ""),
        )
        for item in report
        if isinstance(item, dict)
    ]
