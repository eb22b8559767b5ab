"""Helpers of the untrusted-storage tests: one small database backed up, copies to spoil."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from logical_support import execute

from pgwarden.backup.catalog import find_backup
from pgwarden.backup.logical import create_backup
from pgwarden.backup.manifest import MANIFEST
from pgwarden.backup.storage import LocalStorage
from pgwarden.cli.main import cli

SMALL = [
    "CREATE TABLE authors (id int PRIMARY KEY, name text NOT NULL)",
    "CREATE TABLE books (id int PRIMARY KEY, author int REFERENCES authors, title text)",
    "INSERT INTO authors SELECT g, 'author ' || g FROM generate_series(1, 20) AS g",
    "INSERT INTO books SELECT g, 1 + g % 20, 'book ' || g FROM generate_series(1, 50) AS g",
]


@dataclass(frozen=True)
class Made:
    """A small database and a pristine storage with a custom and a directory backup."""

    url: str
    root: Path
    custom: str
    directory: str


def make_backups(url: str, root: Path) -> Made:
    """Fill the database at ``url`` and back it up both ways into ``root``."""
    execute(url, *SMALL)
    storage = LocalStorage(root)
    custom = create_backup(url, storage).manifest.id
    directory = create_backup(url, storage, dump_format="directory", jobs=2).manifest.id
    return Made(url, root, custom, directory)


def copy_storage(made: Made, where: Path) -> LocalStorage:
    """Return a fresh copy of the pristine storage at ``where``."""
    shutil.copytree(made.root, where)
    return LocalStorage(where)


def manifest_path(storage: LocalStorage, backup_id: str) -> Path:
    return storage.root / find_backup(storage, backup_id).prefix / MANIFEST


def manifest_data(storage: LocalStorage, backup_id: str) -> Any:
    return json.loads(manifest_path(storage, backup_id).read_bytes())


def write_manifest(storage: LocalStorage, backup_id: str, data: Any) -> None:
    manifest_path(storage, backup_id).write_bytes(json.dumps(data).encode())


@dataclass(frozen=True)
class Sentinel:
    """A file outside every staging directory that nothing may touch."""

    path: Path
    content: bytes
    mtime: int

    @classmethod
    def plant(cls, path: Path) -> Sentinel:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"sentinel: nothing may change this file\n")
        status = path.stat()
        return cls(path, path.read_bytes(), status.st_mtime_ns)

    def untouched(self) -> bool:
        siblings = sorted(p.name for p in self.path.parent.iterdir())
        status = os.lstat(self.path)
        return (
            siblings == [self.path.name]
            and self.path.read_bytes() == self.content
            and status.st_mtime_ns == self.mtime
        )


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def clean_end(result: Result) -> bool:
    """Return whether a CLI run succeeded or ended in pgwarden's own error, no traceback."""
    expected = result.exception is None or isinstance(result.exception, SystemExit)
    said = result.exit_code == 0 or "error:" in result.output
    return expected and said and "Traceback" not in result.output
