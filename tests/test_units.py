"""Sizes and durations, written and read back."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pgwarden._units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 bytes"),
        (512, "512 bytes"),
        (1536, "2 kB"),
        (12 * 1024**2, "12 MB"),
        (int(1.2 * 1024**3), "1 GB"),
        (5 * 1024**4, "5 TB"),
        (-3 * 1024**3, "-3 GB"),
    ],
)
def test_format_size_uses_units_of_1024(size: int, shown: str) -> None:
    assert format_size(size) == shown


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1024", 1024),
        ("10MB", 10 * 1024**2),
        ("1GiB", 1024**3),
        ("64kB", 64 * 1024),
        ("16M", 16 * 1024**2),
        ("8MiB", 8 * 1024**2),
        (" 1.5 GB ", int(1.5 * 1024**3)),
        ("2tb", 2 * 1024**4),
        ("100b", 100),
    ],
)
def test_parse_size_reads_what_people_write(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MB", "10 XB", "1,5GB", "-1MB", "ten"])
def test_parse_size_refuses_what_is_not_a_size(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


def test_a_formatted_size_reads_back_within_its_rounding() -> None:
    assert parse_size(format_size(12 * 1024**2).replace(" ", "")) == 12 * 1024**2


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("90s", timedelta(seconds=90)),
        ("5 min", timedelta(minutes=5)),
        ("30m", timedelta(minutes=30)),
        ("500ms", timedelta(milliseconds=500)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1.5h", timedelta(minutes=90)),
        ("45", timedelta(seconds=45)),
    ],
)
def test_parse_duration_reads_what_people_write(text: str, span: timedelta) -> None:
    assert parse_duration(text) == span


def test_a_bare_number_is_in_the_unit_the_caller_names() -> None:
    assert parse_duration("250", unit="ms") == timedelta(milliseconds=250)


@pytest.mark.parametrize("text", ["", "min", "5 years", "-5s", "soon"])
def test_parse_duration_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "shown"), [(12, "12 s"), (300, "5 min"), (3 * 3600 + 600, "3 h")]
)
def test_format_duration_rounds_to_the_largest_unit(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0, "0s"), (45, "45s"), (5400, "90min"), (7200, "2h"), (604800, "7d")]
)
def test_an_exact_duration_reads_back_as_the_same_span(seconds: int, shown: str) -> None:
    assert format_duration(seconds, exact=True) == shown
    assert parse_duration(shown) == timedelta(seconds=seconds)
