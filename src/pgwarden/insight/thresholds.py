"""Read the thresholds of checks given as text: ``unused_indexes.min_size_bytes=0``.

The form a command line, a settings file or an HTTP query gives them in; each value is
read as the type of the threshold's default (a whole number, a number, true or false)::

    thresholds = parse_thresholds(["unused_indexes.min_size_bytes=0"])
    report = doctor(conn, thresholds=thresholds)

A threshold of a check that does not exist, or that the check does not take, is left
for :func:`~pgwarden.insight.doctor.doctor` to refuse, naming the ones it knows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pgwarden.errors import UserError
from pgwarden.insight.doctor import CHECKS, threshold_names

__all__ = ["parse_threshold", "parse_thresholds"]

_KINDS = {bool: "true or false", int: "a whole number", float: "a number"}
_TRUE = {"true", "on", "1"}
_FALSE = {"false", "off", "0"}


def parse_thresholds(settings: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Return ``CHECK.THRESHOLD=VALUE`` settings as thresholds by check name.

    A setting not of that form, or a value not of the threshold's type, is a
    :class:`~pgwarden.errors.UserError` that names it.
    """
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
        thresholds.setdefault(check, {})[name] = parse_threshold(raw, default, setting=setting)
    return thresholds


def parse_threshold(raw: str, default: Any, *, setting: str | None = None) -> Any:
    """Return ``raw`` read as the type of ``default``; text if that type is not a number.

    ``setting`` is the whole setting as given, for the error message.
    """
    kind = type(default)
    try:
        if kind is bool:
            if raw.lower() not in _TRUE | _FALSE:
                raise ValueError(raw)
            return raw.lower() in _TRUE
        if kind is int:
            return int(raw.replace("_", ""))
        if kind is float:
            return float(raw)
    except ValueError:
        raise UserError(
            f"--set {setting or raw!r}: {raw!r} is not {_KINDS.get(kind, kind.__name__)}.",
            hint=f"The default of this threshold is {default!r}.",
        ) from None
    return raw
