"""Decide which backups to keep: grandfather-father-son, pins, and safety floors.

:func:`plan_retention` is a pure function: records in, a plan out, no I/O. For each kind
of backup (``logical``, ``physical``, ...) separately it keeps:

- every **pinned** backup;
- the **newest complete** backup, and the **newest verified** one;
- the ``min_count`` newest complete backups;
- **daily**: the newest complete backup of each of the ``daily`` most recent calendar
  days *that have a complete backup*; likewise **weekly** (ISO weeks, Monday first,
  named ``2026-W47``), **monthly** and **yearly**;
- an incomplete backup (no manifest: still running, or crashed) while it is younger
  than ``incomplete_grace``.

Everything else is removed. The periods are counted back from the newest backup, not
from today, and a period without a backup does not count (as restic's and borg's
``--keep-daily`` do): when backups stop for a while, retention does not eat the last
good ones as days go by. The rules are independent, so one backup can be kept for
several reasons (``daily 2026-11-30``, ``weekly 2026-W49``, ``monthly 2026-11``):
7 daily, 4 weekly and 12 monthly keep at most 23 backups, fewer when they overlap.
Calendar periods are taken in ``timezone`` (UTC by default).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from itertools import groupby

from pgwarden._units import format_duration
from pgwarden.errors import UserError

__all__ = ["BackupRecord", "Decision", "RetentionPlan", "RetentionPolicy", "plan_retention"]


@dataclass(frozen=True, slots=True)
class BackupRecord:
    """Describe one backup as retention sees it.

    ``complete`` means its manifest was written; ``verified_at`` is when a restore or a
    verify last proved it good. Times must be timezone-aware.
    """

    id: str
    started_at: datetime
    ended_at: datetime | None = None
    complete: bool = True
    verified_at: datetime | None = None
    pinned: bool = False
    kind: str = "logical"


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Say how many periods of each size to keep, and the safety floors."""

    daily: int = 7
    weekly: int = 4
    monthly: int = 12
    yearly: int = 0
    min_count: int = 3
    incomplete_grace: timedelta = timedelta(hours=24)
    timezone: tzinfo = UTC

    def __post_init__(self) -> None:
        for name in ("daily", "weekly", "monthly", "yearly", "min_count"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise UserError(
                    f"retention {name} must be a whole number, 0 or more, not {value!r}."
                )
        if self.incomplete_grace < timedelta(0):
            raise UserError("the grace period of incomplete backups cannot be negative.")


@dataclass(frozen=True, slots=True)
class Decision:
    """Say whether one backup is kept, and why (or why not)."""

    backup: BackupRecord
    keep: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RetentionPlan:
    """Hold a decision for every backup, newest first."""

    decisions: tuple[Decision, ...] = field(default=())

    @property
    def kept(self) -> list[BackupRecord]:
        """Return the backups to keep, newest first."""
        return [d.backup for d in self.decisions if d.keep]

    @property
    def removed(self) -> list[BackupRecord]:
        """Return the backups to remove, newest first."""
        return [d.backup for d in self.decisions if not d.keep]

    def decision(self, backup_id: str) -> Decision:
        """Return the decision about the backup ``backup_id``."""
        for decision in self.decisions:
            if decision.backup.id == backup_id:
                return decision
        raise KeyError(backup_id)


def _day(moment: datetime) -> str:
    return moment.date().isoformat()


def _week(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def _month(moment: datetime) -> str:
    return f"{moment.year}-{moment.month:02d}"


def _year(moment: datetime) -> str:
    return str(moment.year)


_RULES: tuple[tuple[str, Callable[[datetime], str]], ...] = (
    ("daily", _day),
    ("weekly", _week),
    ("monthly", _month),
    ("yearly", _year),
)


def _newest_first(backup: BackupRecord) -> tuple[datetime, str]:
    return backup.started_at, backup.id


def plan_retention(
    backups: Iterable[BackupRecord],
    policy: RetentionPolicy | None = None,
    *,
    now: datetime,
) -> RetentionPlan:
    """Return which of ``backups`` to keep and which to remove under ``policy``, with reasons.

    ``now`` (timezone-aware) only ages incomplete backups; the periods are counted from
    the newest backup. Ties in time are broken by id, so the plan is deterministic.
    """
    policy = policy or RetentionPolicy()
    records = list(backups)
    _check(records, now)
    decisions: list[Decision] = []
    by_kind = sorted(records, key=lambda b: b.kind)
    for _, group in groupby(by_kind, key=lambda b: b.kind):
        decisions.extend(_plan_kind(list(group), policy, now))
    decisions.sort(key=lambda d: _newest_first(d.backup), reverse=True)
    return RetentionPlan(tuple(decisions))


def _check(records: list[BackupRecord], now: datetime) -> None:
    if now.tzinfo is None:
        raise UserError("retention needs a timezone-aware 'now'.")
    seen: set[str] = set()
    for backup in records:
        if backup.id in seen:
            raise UserError(f"backup id {backup.id!r} appears more than once.")
        seen.add(backup.id)
        if backup.started_at.tzinfo is None:
            raise UserError(
                f"backup {backup.id!r} has a start time without a timezone.",
                hint="Give times as timezone-aware datetimes (UTC).",
            )


def _plan_kind(group: list[BackupRecord], policy: RetentionPolicy, now: datetime) -> list[Decision]:
    group.sort(key=_newest_first, reverse=True)
    complete = [b for b in group if b.complete]
    reasons: dict[str, list[str]] = {b.id: [] for b in group}
    for backup in group:
        if backup.pinned:
            reasons[backup.id].append("pinned")
    if complete:
        reasons[complete[0].id].append("newest complete")
    verified = next((b for b in complete if b.verified_at is not None), None)
    if verified is not None:
        reasons[verified.id].append("newest verified")
    for backup in complete[: policy.min_count]:
        reasons[backup.id].append(f"one of the {policy.min_count} newest")
    for rule, period_of in _RULES:
        wanted = getattr(policy, rule)
        periods: set[str] = set()
        for backup in complete:
            period = period_of(backup.started_at.astimezone(policy.timezone))
            if period in periods:
                continue
            if len(periods) == wanted:
                break
            periods.add(period)
            reasons[backup.id].append(f"{rule} {period}")
    grace = format_duration(policy.incomplete_grace.total_seconds(), exact=True)
    decisions = []
    for backup in group:
        why = reasons[backup.id]
        if not backup.complete and not backup.pinned:
            if now - backup.started_at > policy.incomplete_grace:
                decisions.append(Decision(backup, False, (f"incomplete, older than {grace}",)))
            else:
                decisions.append(Decision(backup, True, (f"incomplete, younger than {grace}",)))
            continue
        if why:
            decisions.append(Decision(backup, True, tuple(why)))
        else:
            decisions.append(Decision(backup, False, ("kept by no rule",)))
    return decisions
