from __future__ import annotations

import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden.db.binaries import default_search_dirs, embedded_bin_dir, find_binary
from pgwarden.errors import BinaryNotFound


def _fake_program(directory: Path, name: str, output: str) -> Path:
    path = directory / name
    path.write_text(f"#!/bin/sh\necho '{output}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.mark.parametrize("name", ["pg_dump", "pg_restore", "pg_basebackup", "psql"])
def test_clients_are_found_at_least_as_new_as_the_server(pg_engine: Engine, name: str) -> None:
    with pg_engine.connect() as conn:
        server_major = conn.execute(sa.text("SHOW server_version_num")).scalar_one()
    binary = find_binary(name, min_major=int(server_major) // 10000)
    assert binary.path.name == name
    assert binary.major >= int(server_major) // 10000
    assert binary.path.is_file()


def test_the_embedded_wheel_comes_first() -> None:
    embedded = embedded_bin_dir()
    assert embedded is not None
    assert default_search_dirs()[0] == ("embedded", embedded)
    assert find_binary("pg_dump").source == "embedded"


def test_a_missing_program_names_itself_where_it_looked_and_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(BinaryNotFound) as info:
        find_binary("pg_dump", min_major=18, search_dirs=[("PATH", tmp_path)])
    assert "pg_dump 18 or newer was not found" in info.value.message
    assert str(tmp_path) in info.value.message
    assert info.value.hint is not None and "postgresql-client-18" in info.value.hint
    assert info.value.exit_code == 2


def test_a_too_old_program_is_skipped_for_a_newer_one(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    _fake_program(old, "pg_dump", "pg_dump (PostgreSQL) 12.4")
    _fake_program(new, "pg_dump", "pg_dump (PostgreSQL) 16.2 (Debian 16.2-1)")
    found = find_binary("pg_dump", min_major=15, search_dirs=[("PATH", old), ("system", new)])
    assert (found.path.parent, found.version, found.source) == (new, "16.2", "system")


def test_only_too_old_programs_are_listed_in_the_error(tmp_path: Path) -> None:
    _fake_program(tmp_path, "psql", "psql (PostgreSQL) 9.6.24")
    with pytest.raises(BinaryNotFound) as info:
        find_binary("psql", min_major=15, search_dirs=[("PATH", tmp_path)])
    assert "version 9.6" in info.value.message


def test_a_program_that_is_not_postgresql_is_rejected(tmp_path: Path) -> None:
    _fake_program(tmp_path, "pg_dump", "something else entirely")
    with pytest.raises(BinaryNotFound, match="does not report a PostgreSQL version"):
        find_binary("pg_dump", search_dirs=[("PATH", tmp_path)])


@pytest.mark.parametrize("name", ["../bin/sh", "pg_dump; rm -rf /", "PG DUMP", ""])
def test_program_names_are_checked(name: str) -> None:
    with pytest.raises(BinaryNotFound, match="not the name of a PostgreSQL program"):
        find_binary(name)
