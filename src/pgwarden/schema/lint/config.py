"""What a project tells the linter: rules turned off, severities, thresholds of the live weighing.

Read from the ``[lint]`` table of pgwarden's TOML config (``--config``, ``PGWARDEN_CONFIG``,
``./pgwarden.toml``), else from ``[tool.pgwarden.lint]`` of the nearest ``pyproject.toml``::

    [tool.pgwarden.lint]
    disabled = ["prefer-text-field", "prefer-bigint-over-int"]
    severity = { ban-drop-column = "medium" }
    assume_in_transaction = true      # SQL files run inside a transaction
    fail_on = "medium"
    large_rows = 1000000              # a table this large makes a scan "high"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, cast

from pgwarden.config import config_file_path
from pgwarden.errors import ConfigError
from pgwarden.schema.lint.findings import SEVERITIES, Severity

__all__ = ["LintConfig", "load_lint_config"]


@dataclass(frozen=True)
class LintConfig:
    """How to lint: which rules, how severe, and when a live table counts as large or busy.

    ``disabled`` rules are not reported (pgwarden's or squawk's names); ``severity``
    overrides a rule's default before the live database weighs it; ``assume_in_transaction``
    says plain SQL files run inside a transaction (Alembic revisions say so themselves);
    ``squawk`` runs squawk's rules too (its absence is then an error, not a silent gap).
    A table with ``large_rows`` rows or ``large_bytes`` bytes, or taking
    ``busy_writes_per_second``, makes a finding whose cost grows with the table ``high``;
    ``sample_seconds`` is how long the writes are counted for.
    """

    disabled: frozenset[str] = frozenset()
    severity: dict[str, Severity] = field(default_factory=dict)
    assume_in_transaction: bool = False
    squawk: bool = True
    fail_on: Severity = "medium"
    large_rows: int = 1_000_000
    large_bytes: int = 1 << 30
    busy_writes_per_second: float = 50.0
    sample_seconds: float = 1.0

    def with_options(self, **options: Any) -> LintConfig:
        """Return a copy with the options that are not None (a CLI's flags) applied."""
        given = {key: value for key, value in options.items() if value is not None}
        if "disabled" in given:
            given["disabled"] = self.disabled | frozenset(given["disabled"])
        return replace(self, **given)


def load_lint_config(
    config_file: Path | str | None = None, *, start: Path | None = None
) -> LintConfig:
    """Read the lint settings of the project, or the defaults when it has none.

    pgwarden's config file in force (``config_file``, else ``PGWARDEN_CONFIG``, else
    ``./pgwarden.toml``) wins when it has a ``[lint]`` table; otherwise the nearest
    ``pyproject.toml`` from ``start`` (the working directory) upwards is read.
    """
    path = config_file_path(config_file)
    if path is not None:
        data = _read(path)
        table = data.get("pgwarden", data).get("lint")
        if table is not None:
            return _parse(table, f"{path} [lint]")
    directory = (start or Path.cwd()).resolve()
    for folder in (directory, *directory.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            table = _read(pyproject).get("tool", {}).get("pgwarden", {}).get("lint")
            return (
                LintConfig()
                if table is None
                else _parse(table, f"{pyproject} [tool.pgwarden.lint]")
            )
    return LintConfig()


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist.") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"config file {path} cannot be read: {exc}.", hint="It must be TOML."
        ) from None


def _parse(table: Any, where: str) -> LintConfig:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table.")
    known = {f.name for f in fields(LintConfig)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"{where} has unknown keys: {', '.join(unknown)}.",
            hint=f"Known keys: {', '.join(sorted(known))}.",
        )
    values = dict(table)
    try:
        if "disabled" in values:
            values["disabled"] = frozenset(_names(values["disabled"], where))
        if "severity" in values:
            values["severity"] = {
                str(name): _severity(level, f"{where} severity.{name}")
                for name, level in dict(values["severity"]).items()
            }
        if "fail_on" in values:
            values["fail_on"] = _severity(values["fail_on"], f"{where} fail_on")
        for key in ("assume_in_transaction", "squawk"):
            if key in values and not isinstance(values[key], bool):
                raise ConfigError(f"{where} {key} must be true or false.")
        for key in ("large_rows", "large_bytes", "busy_writes_per_second", "sample_seconds"):
            if key in values and (
                isinstance(values[key], bool)
                or not isinstance(values[key], int | float)
                or values[key] < 0
            ):
                raise ConfigError(f"{where} {key} must be a number of at least 0.")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}.") from None
    return LintConfig(**values)


def _names(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} disabled must be a list of rule names.")
    return cast(list[str], value)


def _severity(value: Any, where: str) -> Severity:
    if value not in SEVERITIES:
        raise ConfigError(
            f"{where} = {value!r} is not a severity.", hint=f"Use one of {', '.join(SEVERITIES)}."
        )
    return cast(Severity, value)
