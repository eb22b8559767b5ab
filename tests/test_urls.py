from __future__ import annotations

import pytest

from pgwarden.errors import ConfigError
from pgwarden.urls import (
    async_url,
    libpq_url,
    parse_database_url,
    redact_text,
    redact_url,
    sync_url,
)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cret@db:5432/app", "postgresql://app:***@db:5432/app"),
        ("postgresql+asyncpg://app:s3cret@db/app", "postgresql+asyncpg://app:***@db/app"),
        ("postgresql://app@db/app", "postgresql://app@db/app"),
        ("postgresql://app:p%40ss%3Aw@db/app", "postgresql://app:***@db/app"),
    ],
)
def test_redact_url_hides_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_url_scrubs_text_that_is_not_a_url() -> None:
    assert "s3cret" not in redact_url("not a url but has ://u:s3cret@h in it")


@pytest.mark.parametrize(
    "text",
    [
        'connection to "postgresql://u:s3cret@h:5432/d" failed',
        "host=db user=app password=s3cret dbname=app",
        "host=db password='s3 cret' dbname=app",
        "redis://:s3cret@localhost:6379/0 and amqp://guest:s3cret@mq//",
        "postgresql://u:s3cret@h/d?sslpassword=s3cret",
    ],
)
def test_redact_text_removes_every_password(text: str) -> None:
    scrubbed = redact_text(text)
    assert "s3cret" not in scrubbed
    assert "***" in scrubbed


def test_redact_text_leaves_ordinary_text_alone() -> None:
    text = "SELECT * FROM users WHERE email = 'a@b.c' -- at 12:30@noon"
    assert redact_text(text) == text


def test_postgres_scheme_is_normalised() -> None:
    assert parse_database_url("postgres://u@h/d").drivername == "postgresql"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("", "is empty"),
        ("mysql://root:s3cret@h/d", "'mysql' database backend"),
        ("postgresql+oracle://u:s3cret@h/d", "driver 'oracle'"),
        ("no-scheme-at-all", "not a URL"),
    ],
)
def test_bad_urls_are_refused_without_echoing_the_password(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_database_url(url)
    assert fragment in info.value.message
    assert "s3cret" not in info.value.message
    assert info.value.hint and "postgresql://" in info.value.hint


def test_driver_selection() -> None:
    assert sync_url("postgresql+asyncpg://u@h/d").drivername == "postgresql+psycopg"
    assert async_url("postgresql://u@h/d").drivername == "postgresql+psycopg"
    assert async_url("postgresql+asyncpg://u@h/d").drivername == "postgresql+asyncpg"
    assert async_url("postgresql://u@h/d", driver="asyncpg").drivername == "postgresql+asyncpg"
    with pytest.raises(ConfigError, match="not an async"):
        async_url("postgresql://u@h/d", driver="psycopg2")


def test_libpq_url_keeps_the_password_for_child_processes() -> None:
    assert libpq_url("postgresql+psycopg://u:pw@h:5/d") == "postgresql://u:pw@h:5/d"
