"""Retention plans: worked examples with explicit dates, and properties over random sets."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgwarden.backup.retention import BackupRecord, RetentionPolicy, plan_retention
from pgwarden.errors import UserError


def daily_series(first: date, last: date, hour: int = 2) -> list[BackupRecord]:
    """Return one complete backup a day at ``hour`` UTC, ``first`` to ``last`` inclusive."""
    records = []
    day = first
    while day <= last:
        started = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
        records.append(BackupRecord(id=day.isoformat(), started_at=started))
        day += timedelta(days=1)
    return records


def kept_ids(records: list[BackupRecord], policy: RetentionPolicy | None = None, **kw: object):
    now = kw.pop("now", max(r.started_at for r in records) + timedelta(hours=1))
    plan = plan_retention(records, policy, now=now)  # type: ignore[arg-type]
    return sorted(b.id for b in plan.kept), plan


def test_two_years_of_dailies_keep_7_daily_4_weekly_12_monthly() -> None:
    records = daily_series(date(2024, 12, 1), date(2026, 11, 30))  # 2026-11-30 is a Monday
    kept, plan = kept_ids(records)
    assert kept == [
        "2025-12-31",  # monthly 2025-12
        "2026-01-31",
        "2026-02-28",
        "2026-03-31",
        "2026-04-30",
        "2026-05-31",
        "2026-06-30",
        "2026-07-31",
        "2026-08-31",
        "2026-09-30",
        "2026-10-31",  # monthly 2026-10
        "2026-11-15",  # weekly 2026-W46 (a Sunday)
        "2026-11-22",  # weekly 2026-W47
        "2026-11-24",  # daily from here
        "2026-11-25",
        "2026-11-26",
        "2026-11-27",
        "2026-11-28",
        "2026-11-29",  # also weekly 2026-W48
        "2026-11-30",  # also weekly 2026-W49 and monthly 2026-11
    ]
    assert len(plan.removed) == len(records) - 20
    assert plan.decision("2026-11-30").reasons == (
        "newest complete",
        "one of the 3 newest",
        "daily 2026-11-30",
        "weekly 2026-W49",
        "monthly 2026-11",
    )
    assert plan.decision("2026-11-29").reasons == (
        "one of the 3 newest",
        "daily 2026-11-29",
        "weekly 2026-W48",
    )
    assert plan.decision("2026-11-22").reasons == ("weekly 2026-W47",)
    assert plan.decision("2025-12-31").reasons == ("monthly 2025-12",)
    assert plan.decision("2025-12-30").reasons == ("kept by no rule",)
    assert [d.backup.id for d in plan.decisions[:2]] == ["2026-11-30", "2026-11-29"]


def test_yearly_rule() -> None:
    records = daily_series(date(2023, 6, 1), date(2026, 3, 1))
    kept, _ = kept_ids(
        records, RetentionPolicy(daily=0, weekly=0, monthly=0, yearly=3, min_count=0)
    )
    assert kept == ["2024-12-31", "2025-12-31", "2026-03-01"]


def test_periods_are_counted_among_days_with_backups_not_from_now() -> None:
    """Backups stopped a month ago: the last seven that exist are still the dailies."""
    records = daily_series(date(2026, 9, 1), date(2026, 10, 20))
    now = datetime(2026, 11, 20, tzinfo=UTC)
    kept, _ = kept_ids(records, RetentionPolicy(weekly=0, monthly=0), now=now)
    assert kept == [f"2026-10-{day}" for day in range(14, 21)]


def test_newest_of_each_day_and_timezones() -> None:
    def at(text: str, id_: str) -> BackupRecord:
        return BackupRecord(id=id_, started_at=datetime.fromisoformat(text))

    records = [
        at("2026-11-20T09:00:00+00:00", "a"),
        at("2026-11-20T23:30:00+00:00", "b"),
        at("2026-11-21T00:30:00+02:00", "c"),  # 2026-11-20T22:30Z: before b
        at("2026-11-21T00:30:00+00:00", "d"),
    ]
    policy = RetentionPolicy(daily=2, weekly=0, monthly=0, min_count=0)
    kept, plan = kept_ids(records, policy)
    assert kept == ["b", "d"]
    assert plan.decision("b").reasons == ("daily 2026-11-20",)
    # In UTC+2, a is the only backup of the 20th, and b, c and d all fall on the 21st.
    local = RetentionPolicy(
        daily=2, weekly=0, monthly=0, min_count=0, timezone=timezone(timedelta(hours=2))
    )
    kept, plan = kept_ids(records, local)
    assert kept == ["a", "d"]
    assert plan.decision("d").reasons == ("newest complete", "daily 2026-11-21")


def test_pins_floors_incomplete_and_verified() -> None:
    t0 = datetime(2026, 11, 1, 2, tzinfo=UTC)
    records = [
        BackupRecord("old-pinned", t0 - timedelta(days=400), pinned=True),
        BackupRecord("old-verified", t0 - timedelta(days=300), verified_at=t0),
        BackupRecord("old", t0 - timedelta(days=200)),
        BackupRecord("newest", t0),
        BackupRecord("crashed", t0 + timedelta(hours=1), complete=False),
        BackupRecord("crashed-pinned", t0 + timedelta(hours=2), complete=False, pinned=True),
        BackupRecord("running", t0 + timedelta(hours=30), complete=False),
        BackupRecord("physical", t0 - timedelta(days=500), kind="physical"),
    ]
    policy = RetentionPolicy(daily=0, weekly=0, monthly=0, min_count=0)
    plan = plan_retention(records, policy, now=t0 + timedelta(hours=31))
    assert {d.backup.id: (d.keep, d.reasons) for d in plan.decisions} == {
        "old-pinned": (True, ("pinned",)),
        "old-verified": (True, ("newest verified",)),
        "old": (False, ("kept by no rule",)),
        "newest": (True, ("newest complete",)),
        "crashed": (False, ("incomplete, older than 1d",)),
        "crashed-pinned": (True, ("pinned",)),
        "running": (True, ("incomplete, younger than 1d",)),
        "physical": (True, ("newest complete",)),  # each kind is its own series
    }
    hourly = RetentionPolicy(incomplete_grace=timedelta(hours=1))
    assert plan_retention(records, hourly, now=t0 + timedelta(hours=31)).decision(
        "running"
    ).reasons == ("incomplete, younger than 1h",)


def test_min_count_keeps_the_newest_whatever_the_rules() -> None:
    start = datetime(2026, 11, 20, tzinfo=UTC)
    records = [BackupRecord(f"b{i}", start + timedelta(minutes=i)) for i in range(6)]
    kept, _ = kept_ids(records, RetentionPolicy(daily=1, weekly=0, monthly=0, min_count=4))
    assert kept == ["b2", "b3", "b4", "b5"]


def test_bad_input() -> None:
    now = datetime(2026, 11, 20, tzinfo=UTC)
    with pytest.raises(UserError, match="timezone"):
        plan_retention([BackupRecord("a", datetime(2026, 11, 20))], now=now)
    with pytest.raises(UserError, match="more than once"):
        plan_retention([BackupRecord("a", now), BackupRecord("a", now)], now=now)
    with pytest.raises(UserError, match="daily"):
        RetentionPolicy(daily=-1)
    assert plan_retention([], now=now).decisions == ()


# -- properties -----------------------------------------------------------------------

ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
BASE = datetime(2025, 1, 1, tzinfo=UTC)


@st.composite
def backup_sets(draw: st.DrawFn) -> list[BackupRecord]:
    size = draw(st.integers(min_value=0, max_value=60))
    span = draw(st.sampled_from([3, 40, 800]))  # days: many per day, or spread out
    records = []
    for i in range(size):
        moment = BASE + timedelta(
            days=draw(st.integers(0, span)), hours=draw(st.sampled_from([0, 1, 13, 23]))
        )
        complete = draw(st.booleans()) or draw(st.booleans())
        records.append(
            BackupRecord(
                id=f"b{i:02d}",
                started_at=moment.astimezone(draw(st.sampled_from(ZONES))),
                complete=complete,
                verified_at=moment + timedelta(hours=2) if draw(st.booleans()) else None,
                pinned=draw(st.integers(0, 9)) == 0,
                kind=draw(st.sampled_from(["logical", "logical", "physical"])),
            )
        )
    return records


policies = st.builds(
    RetentionPolicy,
    daily=st.integers(0, 8),
    weekly=st.integers(0, 5),
    monthly=st.integers(0, 13),
    yearly=st.integers(0, 3),
    min_count=st.integers(0, 5),
    incomplete_grace=st.sampled_from([timedelta(0), timedelta(hours=1), timedelta(days=2)]),
    timezone=st.sampled_from(ZONES),
)


def newest(records: list[BackupRecord]) -> BackupRecord:
    return max(records, key=lambda b: (b.started_at, b.id))


@settings(max_examples=200, deadline=None)
@given(records=backup_sets(), policy=policies, later=st.integers(0, 72))
def test_plan_invariants(records: list[BackupRecord], policy: RetentionPolicy, later: int) -> None:
    now = (newest(records).started_at if records else BASE) + timedelta(hours=later)
    plan = plan_retention(records, policy, now=now)
    assert sorted(d.backup.id for d in plan.decisions) == sorted(b.id for b in records)
    assert all(d.reasons for d in plan.decisions)
    kept = {b.id for b in plan.kept}

    for kind in {b.kind for b in records}:
        series = [b for b in records if b.kind == kind]
        complete = [b for b in series if b.complete]
        assert all(b.id in kept for b in series if b.pinned)
        if complete:
            assert newest(complete).id in kept
            assert len([b for b in complete if b.id in kept]) >= min(
                policy.min_count, len(complete)
            )
        verified = [b for b in complete if b.verified_at is not None]
        if verified:
            assert newest(verified).id in kept
        for b in series:
            if not b.complete and not b.pinned:
                assert (b.id in kept) == (now - b.started_at <= policy.incomplete_grace)

        for rule in ("daily", "weekly", "monthly", "yearly"):
            holders: dict[str, list[BackupRecord]] = defaultdict(list)
            for decision in plan.decisions:
                if decision.backup.kind != kind:
                    continue
                for reason in decision.reasons:
                    if reason.startswith(f"{rule} "):
                        holders[reason.removeprefix(f"{rule} ")].append(decision.backup)
            assert len(holders) <= getattr(policy, rule)
            for period, holding in holders.items():
                assert len(holding) == 1  # at most one kept per period and rule
                in_period = [b for b in complete if _period(rule, b, policy) == period]
                assert holding[0] == newest(in_period)
            # The periods kept are the most recent ones that have a complete backup.
            periods = sorted(
                {_period(rule, b, policy) for b in complete}, key=_period_order, reverse=True
            )
            assert (
                sorted(holders, key=_period_order, reverse=True) == periods[: getattr(policy, rule)]
            )

    again = plan_retention(plan.kept, policy, now=now)
    assert again.removed == []


def _period(rule: str, backup: BackupRecord, policy: RetentionPolicy) -> str:
    local = backup.started_at.astimezone(policy.timezone)
    if rule == "daily":
        return local.date().isoformat()
    if rule == "weekly":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    if rule == "monthly":
        return f"{local.year}-{local.month:02d}"
    return str(local.year)


def _period_order(period: str) -> tuple[int, ...]:
    return tuple(int(part) for part in period.replace("W", "").split("-"))
