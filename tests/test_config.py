from __future__ import annotations

from pathlib import Path

import pytest

from pgwarden.config import env_name, load_settings
from pgwarden.errors import ConfigError


def test_defaults_match_the_documented_pool() -> None:
    settings = load_settings()
    assert settings.database_url is None
    assert (settings.db_pool_size, settings.db_max_overflow) == (20, 30)
    assert (settings.db_pool_timeout, settings.db_pool_recycle) == (30, 3600)
    assert settings.db_echo is False
    assert settings.log_format == "text"


def test_environment_sets_database_and_pgwarden_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://app:pw@db/app")
    monkeypatch.setenv("DB_POOL_SIZE", "5")
    monkeypatch.setenv("DB_ECHO", "true")
    monkeypatch.setenv("PGWARDEN_LOG_FORMAT", "JSON")
    monkeypatch.setenv("PGWARDEN_STATEMENT_TIMEOUT", "2min")
    settings = load_settings()
    assert settings.database_url == "postgresql://app:pw@db/app"
    assert settings.db_pool_size == 5
    assert settings.db_echo is True
    assert settings.log_format == "json"
    assert settings.statement_timeout_ms == 120_000


def test_precedence_command_line_then_environment_then_dotenv_then_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "pgwarden.toml"
    config.write_text(
        "[pgwarden]\ndb_pool_size = 1\ndb_max_overflow = 1\n"
        "db_pool_timeout = 1\ndb_pool_recycle = 1\n"
    )
    (tmp_path / ".env").write_text("DB_MAX_OVERFLOW=2\nDB_POOL_TIMEOUT=2\nDB_POOL_RECYCLE=2\n")
    monkeypatch.setenv("DB_POOL_TIMEOUT", "3")
    monkeypatch.setenv("DB_POOL_RECYCLE", "3")
    settings = load_settings(db_pool_recycle=4)
    assert settings.db_pool_size == 1  # only the file sets it
    assert settings.db_max_overflow == 2  # .env beats the file
    assert settings.db_pool_timeout == 3  # the environment beats .env
    assert settings.db_pool_recycle == 4  # the command line beats everything


def test_config_file_from_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text('log_level = "debug"\nserver_port = 6000\n')
    monkeypatch.setenv("PGWARDEN_CONFIG", str(path))
    settings = load_settings()
    assert (settings.log_level, settings.server_port) == ("DEBUG", 6000)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DB_POOL_SIZE", "many", "whole number of connections"),
        ("DB_POOL_SIZE", "0", "1 or more"),
        ("DB_POOL_TIMEOUT", "-1", "above 0"),
        ("DB_ECHO", "perhaps", "true or false"),
        ("PGWARDEN_LOG_FORMAT", "xml", "text or json"),
        ("PGWARDEN_STATEMENT_TIMEOUT", "soon", "duration such as 30s"),
        ("PGWARDEN_SERVER_PORT", "70000", "1-65535"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_expected_form(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert variable in info.value.message
    assert repr(value) in info.value.message
    assert expected in f"{info.value.message} {info.value.hint}"


def test_a_bad_database_url_is_named_and_its_password_hidden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://root:hunter2@db/app")
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = f"{info.value.message} {info.value.hint}"
    assert "DATABASE_URL" in text
    assert "PostgreSQL" in text
    assert "hunter2" not in text


def test_unknown_and_broken_config_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("db_pool_size = = 3")
    with pytest.raises(ConfigError, match=r"must be TOML|cannot be read"):
        load_settings(broken)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("db_pool_sise = 3")
    with pytest.raises(ConfigError, match="unknown keys: db_pool_sise"):
        load_settings(unknown)


def test_repr_never_shows_a_password() -> None:
    settings = load_settings(database_url="postgresql://app:hunter2@db/app")
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings)
    assert settings.database_url is not None and "hunter2" in settings.database_url


def test_env_names() -> None:
    assert env_name("database_url") == "DATABASE_URL"
    assert env_name("db_pool_size") == "DB_POOL_SIZE"
    assert env_name("log_format") == "PGWARDEN_LOG_FORMAT"
    assert env_name("statement_timeout_ms") == "PGWARDEN_STATEMENT_TIMEOUT"
