"""pg_restore's SQL goes into psql only with client programs that have ``\\restrict``.

Before the fix of CVE-2025-8714 a crafted archive makes the SQL pg_restore writes
carry psql meta-commands, which psql runs on the restoring machine. Client programs
that lack it are passed over when a fixed pair exists, and refused otherwise.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pgwarden.backup import _pgtools
from pgwarden.backup._pgrestore import RestoreCommand
from pgwarden.db import clients
from pgwarden.db.binaries import Binary, find_binary, lacks_restrict
from pgwarden.errors import BinaryNotFound


def _clients(directory: Path, version: str, *, psql: str | None = None) -> Path:
    """Write a pg_restore (and psql) into ``directory`` that report ``version``."""
    directory.mkdir(parents=True)
    for name, shown in (("pg_restore", version), ("psql", psql or version)):
        program = directory / name
        program.write_text(f'#!/bin/sh\necho "{name} (PostgreSQL) {shown}"\n')
        program.chmod(0o755)
    return directory


@pytest.mark.parametrize(
    ("version", "lacks"),
    [
        ("17.5", True), ("17.6", False), ("16.9", True), ("16.10", False),
        ("15.13", True), ("15.14", False), ("14.18", True), ("14.19", False),
        ("13.21", True), ("13.22", False), ("12.22", True), ("17", True),
        ("18.0", False), ("18", False), ("19.1", False),
    ],
)  # fmt: skip
def test_the_versions_with_the_fix(version: str, lacks: bool) -> None:
    major = int(version.split(".")[0])
    binary = Binary("psql", Path("/x/psql"), major, version, "PATH")
    assert lacks_restrict(binary) is lacks


def test_a_pair_with_the_fix_is_preferred_to_an_older_one_found_first(tmp_path: Path) -> None:
    old = _clients(tmp_path / "old", "16.9")
    new = _clients(tmp_path / "new", "16.10")
    dirs = [("PATH", old), ("system", new)]
    found = find_binary("pg_restore", min_major=16, search_dirs=dirs, refuse=_pgtools.unsafe_pipe)
    assert found.path == new / "pg_restore"
    assert find_binary("pg_restore", min_major=16, search_dirs=dirs).path == old / "pg_restore"

    mixed = _clients(tmp_path / "mixed", "16.10", psql="16.9")  # psql is what runs them
    with pytest.raises(BinaryNotFound, match=r"psql 16\.9 lack the fix of CVE-2025-8714"):
        find_binary(
            "pg_restore", min_major=16, search_dirs=[("PATH", mixed)], refuse=_pgtools.unsafe_pipe
        )


def test_piping_into_an_old_psql_is_refused_before_anything_runs(tmp_path: Path) -> None:
    old = _clients(tmp_path / "old", "16.9")
    binary = Binary("pg_restore", old / "pg_restore", 16, "16.9", "PATH")
    client = clients.client_args("postgresql://u@127.0.0.1:1/db", application_name="t")
    with pytest.raises(BinaryNotFound) as raised:
        RestoreCommand(binary, 16, client, [])
    assert "CVE-2025-8714" in raised.value.message and "pg_restore 16.9" in raised.value.message
    assert raised.value.hint and "16.10" in raised.value.hint and "embedded" in raised.value.hint
    assert raised.value.exit_code == 2

    parallel = RestoreCommand(binary, 16, client, [], jobs=2)  # no psql in the way
    assert not parallel.through_psql and parallel.mode == "pg_restore"
    (old / "psql").unlink()  # pg_restore alone connects to the server itself
    assert RestoreCommand(binary, 16, client, []).mode == "pg_restore"


def test_the_clients_pgwarden_finds_here_have_the_fix() -> None:
    binary = _pgtools.client_binary("pg_restore", min_major=15, into_psql=True)
    assert _pgtools.unsafe_pipe(binary) is None
