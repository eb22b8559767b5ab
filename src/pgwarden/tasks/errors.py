"""Errors of scheduled jobs and their configuration, within pgwarden's one tree."""

from __future__ import annotations

from pgwarden.errors import ConfigError

__all__ = ["TargetsInvalid", "UnknownTarget"]


class TargetsInvalid(ConfigError):
    """Raise when the ``[targets]``, ``[tasks]`` or ``[alerts]`` tables are not valid.

    The message names the table and key; the hint says what form the value takes.
    """


class UnknownTarget(ConfigError):
    """Raise when a target is asked for by a name the config does not define."""

    status_code = 404  # the admin API's answer: no such target
