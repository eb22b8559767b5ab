"""Integrity is the verdict, whatever fails first: the checksum or the load.

A changed byte in an unencrypted archive may make pg_restore or psql fail (a bad
length, a value that does not parse) before the stream's checksum is complete. Verify
and restore, from the library and the CLI, must still report the damage as what it
is: exit code 3 naming the checksum (or the key), every time, whatever the timing.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from logical_support import data_path, execute, flip_byte, key_setting, keyring, truncate
from logical_support import user_tables as tables_of

from pgwarden.backup.errors import IntegrityFailed
from pgwarden.backup.logical import create_backup
from pgwarden.backup.manifest import Manifest
from pgwarden.backup.restore import restore_backup
from pgwarden.backup.storage import LocalStorage
from pgwarden.backup.verify import verify_backup
from pgwarden.cli.main import cli
from pgwarden.testing.servers import TestServer

pytest_plugins = ["logical_fixtures"]  # target_url

ROUNDS = 3  # the same damage, again and again: the verdict must not depend on timing


@pytest.fixture(scope="module")
def made(
    pg_server: TestServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path, Manifest, Manifest]]:
    """Yield a database and a storage with a plain and an encrypted backup of it.

    Uncompressed and several MiB, so that the archive streams in many chunks and a
    changed byte reaches pg_restore long before the stream's end.
    """
    name = pg_server.create_database(template="template0")
    url = pg_server.url(name)
    execute(
        url,
        "CREATE TABLE events (id bigint PRIMARY KEY, happened date, note text)",
        "INSERT INTO events SELECT g, DATE '2026-01-01' + g % 300, 'note ' || g "
        "FROM generate_series(1, 150000) AS g",
    )
    root = tmp_path_factory.mktemp("integrity") / "backups"
    storage = LocalStorage(root)
    plain = create_backup(url, storage, compression="none").manifest
    sealed = create_backup(url, storage, compression="none", keyring=keyring()).manifest
    assert plain.files[0].size > 4 * 1024 * 1024
    yield url, root, plain, sealed
    pg_server.drop_database(name)


def _damaged(made: tuple[str, Path, Manifest, Manifest], tmp_path: Path, damage: str) -> Any:
    """Return a copy of the storage with one backup damaged, that backup, and the key."""
    _, root, plain, sealed = made
    copy = LocalStorage(tmp_path / "copy")
    shutil.copytree(root, copy.root)
    manifest, setting = plain, None
    path = data_path(copy, plain.id)
    size = path.stat().st_size
    if damage == "flipped byte at the start":  # the archive's header: pg_restore fails
        flip_byte(path, 100)
    elif damage == "flipped tab in the middle":  # a column separator: psql fails
        flip_byte(path, path.read_bytes().index(b"\t", size // 2))
    elif damage == "flipped byte near the end":  # in the last chunk, held back
        flip_byte(path, size - 100)
    elif damage == "truncated":
        truncate(path, 0.6)
    else:
        manifest, setting = sealed, key_setting(fill=b"z")
    return copy, manifest, setting


DAMAGES = [
    "flipped byte at the start",
    "flipped tab in the middle",
    "flipped byte near the end",
    "truncated",
    "wrong key",
]


def _named(message: str, damage: str) -> bool:
    return ("key" if damage == "wrong key" else "checksum") in message


@pytest.mark.parametrize("damage", DAMAGES)
def test_the_library_reports_the_damage_first(
    damage: str, made: tuple[str, Path, Manifest, Manifest], target_url: str, tmp_path: Path
) -> None:
    url = made[0]
    storage, manifest, setting = _damaged(made, tmp_path, damage)
    ring = keyring(fill=b"z") if setting else None
    attempts: list[Callable[[], object]] = [
        lambda: verify_backup(storage, manifest.id, url, keyring=ring, amcheck=False),
        lambda: restore_backup(storage, manifest.id, target_url, keyring=ring),
        lambda: restore_backup(storage, manifest.id, target_url, keyring=ring, precheck=False),
    ]
    for _ in range(ROUNDS):
        for attempt in attempts:
            with pytest.raises(IntegrityFailed) as raised:
                attempt()
            assert raised.value.exit_code == 3
            assert _named(raised.value.message, damage), raised.value.message
            assert tables_of(target_url) == []


@pytest.mark.parametrize("damage", DAMAGES)
def test_the_cli_reports_the_damage_first(
    damage: str,
    made: tuple[str, Path, Manifest, Manifest],
    target_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = made[0]
    storage, manifest, setting = _damaged(made, tmp_path, damage)
    if setting:
        monkeypatch.setenv("PGWARDEN_ENCRYPTION_KEYS", setting)
    where = str(storage.root)
    commands = [
        ["--database-url", url, "backup", "verify", manifest.id, "--no-amcheck"],
        ["restore", manifest.id, "--target-url", target_url],
    ]
    for _ in range(ROUNDS):
        for command in commands:
            result = CliRunner().invoke(cli, ["--json", *command, "--storage", where])
            assert result.exit_code == 3, result.output
            error = json.loads(result.stdout)["error"]
            assert _named(error["message"], damage), error
            assert tables_of(target_url) == []
        shown = CliRunner().invoke(cli, [*commands[1], "--storage", where])
        assert shown.exit_code == 3
        assert shown.exception is None or isinstance(shown.exception, SystemExit)
        assert "error:" in shown.stderr and "Traceback" not in shown.output
