"""Thresholds as text: each value read as the type of the threshold's default."""

from __future__ import annotations

import pytest

from pgwarden.errors import UserError
from pgwarden.insight.thresholds import parse_threshold, parse_thresholds


def test_values_take_the_type_of_the_default() -> None:
    thresholds = parse_thresholds(
        [
            "unused_indexes.min_size_bytes=1_000",
            "unused_indexes.max_scans=3",
            "sequence_usage.threshold=0.5",
        ]
    )
    assert thresholds == {
        "unused_indexes": {"min_size_bytes": 1000, "max_scans": 3},
        "sequence_usage": {"threshold": 0.5},
    }


@pytest.mark.parametrize(
    ("raw", "expected"), [("true", True), ("ON", True), ("0", False), ("off", False)]
)
def test_a_flag_reads_true_or_false(raw: str, expected: bool) -> None:
    assert parse_threshold(raw, False) is expected


def test_an_unknown_check_is_left_for_the_doctor_to_refuse() -> None:
    # doctor() names the known checks; text is kept as given until then.
    assert parse_thresholds(["nope.x=1"]) == {"nope": {"x": "1"}}


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("unused_indexes.min_size_bytes=ten", "is not a whole number"),
        ("sequence_usage.threshold=half", "is not a number"),
        ("unused_indexes", "is not CHECK.THRESHOLD=VALUE"),
        ("unused_indexes=3", "is not CHECK.THRESHOLD=VALUE"),
    ],
)
def test_a_bad_setting_is_a_user_error_naming_it(setting: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as caught:
        parse_thresholds([setting])
    assert setting in caught.value.message
