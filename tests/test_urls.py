from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import URL, make_url

from pgwarden.errors import ConfigError
from pgwarden.insight._literals import literal
from pgwarden.urls import (
    async_url,
    libpq_url,
    parse_database_url,
    redact_text,
    redact_url,
    split_secrets,
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


# -- secrets wherever they sit in a connection string ----------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u@h/db?password=S3cret", "postgresql://u@h/db?password=***"),
        ("postgresql://u@h/db?sslpassword=S3cret", "postgresql://u@h/db?sslpassword=***"),
        ("postgresql://u@h/db?PassWord=S3cret", "postgresql://u@h/db?PassWord=***"),
        ("postgresql://u@h/db?SSLPASSWORD=S3cret", "postgresql://u@h/db?SSLPASSWORD=***"),
        ("postgresql://u@h/db?pass%77ord=S3cret", "postgresql://u@h/db?password=***"),
        (
            "postgresql://u:S3cret@h/db?password=S3cret&sslmode=require&sslpassword=S3cret",
            "postgresql://u:***@h/db?password=***&sslmode=require&sslpassword=***",
        ),
        ("postgresql://u:S3c@ret@h/db", "postgresql://u:***@h/db"),
        ("host=h password='S3 cret' dbname=db", "host=h password='***' dbname=db"),
    ],
)
def test_redact_url_hides_every_password_of_a_connection_string(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("env PGPASSWORD=S3cret pg_dump", "env PGPASSWORD=*** pg_dump"),
        ("{'PGPASSWORD': 'S3cret', 'HOME': '/h'}", "{'PGPASSWORD': '***', 'HOME': '/h'}"),
        ('{"password": "S3\\"cret", "user": "u"}', '{"password": "***", "user": "u"}'),
        ("host=h password=S3&cret sslpassword=S3;cret", "host=h password=*** sslpassword=***"),
        ("host=h password=S3\\ cret port=1", "host=h password=*** port=1"),
        ("ALTER ROLE app PASSWORD 'hunter2'", "ALTER ROLE app PASSWORD '***'"),
        ("alter role app with encrypted password 'hun''ter2'",
         "alter role app with encrypted password '***'"),
        ("CREATE ROLE app LOGIN PASSWORD 'hunter2' VALID UNTIL 'infinity'",
         "CREATE ROLE app LOGIN PASSWORD '***' VALID UNTIL 'infinity'"),
        ("CREATE USER app PASSWORD $$hunter2$$;", "CREATE USER app PASSWORD '***';"),
        ("ALTER USER app PASSWORD $pw$hun'ter2$pw$", "ALTER USER app PASSWORD '***'"),
        ("ALTER ROLE app PASSWORD E'hun\\'ter2'", "ALTER ROLE app PASSWORD '***'"),
        ("ALTER ROLE app PASSWORD 'hunter2", "ALTER ROLE app PASSWORD '***'"),
        ("CREATE USER MAPPING FOR u SERVER s OPTIONS (user 'u', password 'hunter2')",
         "CREATE USER MAPPING FOR u SERVER s OPTIONS (user 'u', password '***')"),
        ("ALTER ROLE app PASSWORD NULL", "ALTER ROLE app PASSWORD NULL"),
        ('FATAL: password authentication failed for user "app"',
         'FATAL: password authentication failed for user "app"'),
    ],
)  # fmt: skip
def test_redact_text_covers_environments_dicts_and_sql(text: str, shown: str) -> None:
    assert redact_text(text) == shown


def test_split_secrets_takes_every_secret_out() -> None:
    url = make_url("postgresql://u:one@h:5/db?Password=two&sslpassword=three&sslmode=require")
    public, secrets = split_secrets(url)
    assert public.render_as_string(hide_password=False) == "postgresql://u@h:5/db?sslmode=require"
    # As in libpq, the query parameter wins over the user info.
    assert secrets == {"password": "two", "sslpassword": "three"}
    assert split_secrets(make_url("postgresql://u@h/db"))[1] == {}


_KV_REDACTED = re.compile(r"host=db password=('?)\*\*\*\1 sslpassword=('?)\*\*\*\2 dbname=app")
_ENV_REDACTED = re.compile(r"""\{'PGPASSWORD': (['"])\*\*\*\1, 'HOME': '/h'\}""")
_SECRETS = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=24)


@settings(max_examples=40, deadline=None)
@given(password=_SECRETS, ssl=_SECRETS)
def test_no_password_survives_redaction_whatever_it_holds(password: str, ssl: str) -> None:
    url = URL.create(
        "postgresql", username="app", host="db", database="app",
        query={"password": password, "sslpassword": ssl, "sslmode": "require"},
    )  # fmt: skip
    expected = "postgresql://app@db/app?password=***&sslmode=require&sslpassword=***"
    assert redact_url(url) == expected
    assert redact_url(url.render_as_string(hide_password=False)) == expected
    with_userinfo = url.set(password=password)
    assert redact_url(with_userinfo) == expected.replace("app@", "app:***@")
    dsn = make_conninfo(host="db", password=password, sslpassword=ssl, dbname="app")
    assert _KV_REDACTED.fullmatch(redact_text(dsn)), redact_text(dsn)
    environment = repr({"PGPASSWORD": password, "HOME": "/h"})
    assert _ENV_REDACTED.fullmatch(redact_text(environment)), redact_text(environment)
    document = json.dumps({"password": password, "user": "u"})
    assert redact_text(document) == '{"password": "***", "user": "u"}'

    statement = f"ALTER ROLE app ENCRYPTED PASSWORD {literal(password)}"
    assert redact_text(statement) == "ALTER ROLE app ENCRYPTED PASSWORD '***'"
    if "$p$" not in password:
        dollar = f"CREATE USER app PASSWORD $p${password}$p$ LOGIN"
        assert redact_text(dollar) == "CREATE USER app PASSWORD '***' LOGIN"
