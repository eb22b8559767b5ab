"""The check_* functions hand each check its own thresholds, by name, in any order."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from pgwarden.insight import activity, indexes, tables, vacuum
from pgwarden.insight.doctor import threshold_names
from pgwarden.insight.findings import Check, CheckResult, run_checks


class Recording:
    """Stands in for a check: records the thresholds it is called with."""

    def __init__(self, name: str, calls: dict[str, dict[str, Any]]) -> None:
        self.name = name
        self.calls = calls

    def __call__(self, conn: object, **thresholds: Any) -> CheckResult:
        self.calls[self.name] = thresholds
        return CheckResult(self.name, [])


# Each check_* function called with thresholds unlike any default.
CALLS: list[tuple[ModuleType, Callable[..., Any], dict[str, Any]]] = [
    (indexes, indexes.check_indexes, {"max_scans": 7, "min_size_bytes": 3}),
    (
        activity,
        activity.check_activity,
        {
            "long_running_s": 11.0,
            "idle_in_transaction_s": 12.0,
            "blocked_s": 13.0,
            "connections_warning": 0.1,
            "connections_critical": 0.2,
        },
    ),
    (
        tables,
        tables.check_tables,
        {"min_rows": 1, "min_rows_read": 2, "min_hit_ratio": 0.3, "min_blocks": 4},
    ),
    (
        vacuum,
        vacuum.check_vacuum,
        {
            "min_dead_rows": 1,
            "min_dead_fraction": 0.02,
            "min_inserted_rows": 3,
            "min_modified_rows": 4,
            "min_modified_fraction": 0.05,
        },
    ),
]


def _run(
    monkeypatch: pytest.MonkeyPatch, module: ModuleType, order: list[Check], call: Callable[[], Any]
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    calls: dict[str, dict[str, Any]] = {}
    monkeypatch.setattr(module, "CHECKS", tuple(Recording(check.name, calls) for check in order))
    results = call()
    return calls, [result.check for result in results]


@pytest.mark.parametrize(
    ("module", "check_all", "arguments"), CALLS, ids=[module.__name__ for module, *_ in CALLS]
)
def test_reordering_the_checks_keeps_each_checks_thresholds(
    monkeypatch: pytest.MonkeyPatch,
    module: ModuleType,
    check_all: Callable[..., Any],
    arguments: dict[str, Any],
) -> None:
    checks: list[Check] = list(module.CHECKS)
    call = lambda: check_all(None, **arguments)  # noqa: E731
    in_order, names = _run(monkeypatch, module, checks, call)
    reordered, reordered_names = _run(monkeypatch, module, checks[::-1], call)

    assert reordered == in_order
    assert names == [check.name for check in checks]
    assert reordered_names == names[::-1]  # results come in the registry's order
    for check in checks:
        # Each check got only thresholds it takes, and together every one given.
        assert set(in_order[check.name]) <= set(threshold_names(check))
    given = sorted(value for thresholds in in_order.values() for value in thresholds.values())
    assert given == sorted(arguments.values())


def test_a_misspelt_check_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unused_indexs"):
        run_checks(None, indexes.CHECKS, {"unused_indexs": {"max_scans": 1}})  # type: ignore[arg-type]


def test_a_real_unused_index_is_found_with_the_registry_reversed(
    monkeypatch: pytest.MonkeyPatch, run: Callable[..., None], pg_engine: Engine
) -> None:
    run(
        "CREATE TABLE gadget (id bigint PRIMARY KEY, label text)",
        "CREATE INDEX ix_gadget_label ON gadget (label)",
    )
    monkeypatch.setattr(indexes, "CHECKS", indexes.CHECKS[::-1])
    with pg_engine.connect() as conn:
        results = {r.check: r for r in indexes.check_indexes(conn, min_size_bytes=0)}
    assert "public.ix_gadget_label" in {f.subject for f in results["unused_indexes"].findings}
