"""Mutated manifests and storages fed to list, info, verify and restore.

One real storage (a custom-format and a directory-format backup of a small database)
is built once; each example spoils a copy of it: a field set to a value of another
type, removed or added; a file name with ``..``, ``//`` or an absolute path; a naive
or absurd time; deep nesting; bad UTF-8; symbolic links out of the storage. Every
run, from the library and from the CLI, must end in a correct result or a clean
:class:`PgwardenError` (``error:``, no traceback), and no file outside the staging
directory may be touched: a sentinel file keeps its content and its mtime.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from logical_support import checksums, user_tables
from untrusted_support import Made, Sentinel, clean_end, make_backups, run

from pgwarden.backup.catalog import backup_info, find_backup, list_backups
from pgwarden.backup.manifest import MANIFEST
from pgwarden.backup.restore import restore_backup
from pgwarden.backup.storage import LocalStorage
from pgwarden.backup.verify import verify_backup
from pgwarden.errors import PgwardenError
from pgwarden.testing.servers import TestServer

Json = Any
Mutation = Callable[[Json], Json]

FIELDS = [
    "format", "kind", "status", "id", "database", "database_url", "server_version",
    "client_version", "started_at", "ended_at", "dump_format", "compression",
    "compression.method", "compression.level", "encryption", "files", "files.0",
    "files.0.name", "files.0.size", "files.0.sha256", "files.0.plain_size", "tables",
    "tables.0", "tables.0.schema", "tables.0.name", "tables.0.rows", "tables.0.parent",
    "tables.0.indexes", "tables.0.foreign_keys", "row_counts", "large_objects",
    "snapshot", "options", "options.section", "options.tables", "pgwarden_version", "size",
]  # fmt: skip
NAMES = [
    "data/../../../outside/sentinel", "data//{outside}/sentinel", "{outside}/sentinel",
    "data/../../sentinel", "data/./toc.dat", "data/sub/toc.dat", "data/..", "data/",
    "data.dump/../x", "data\\..\\x", "data/toc.dat\x00", "../data.dump", "",
]  # fmt: skip
TIMES = [
    "2026-11-23T10:15:00", "2026-11-23", "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00", "yesterday", "2026-11-23T10:15:00+25:00",
]  # fmt: skip

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["[/x]", "[bold]", "\x1b[31m", "%s", ":x", "../..", "\u202e"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)


def _at(data: Json, path: str) -> tuple[Json, str | int] | None:
    """Return the container holding ``path`` and its last key, if the path exists."""
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in path.split(".")]
    for part in parts[:-1]:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return (data, parts[-1]) if isinstance(data, dict | list) else None


def _set(path: str, value: Json) -> Mutation:
    def apply(data: Json) -> Json:
        found = _at(data, path)
        if found is not None:
            holder, key = found
            if isinstance(holder, dict) or (isinstance(key, int) and key < len(holder)):
                holder[key] = value
        return data

    return apply


def _delete(path: str) -> Mutation:
    def apply(data: Json) -> Json:
        found = _at(data, path)
        if found is not None and isinstance(found[0], dict):
            found[0].pop(found[1], None)
        return data

    return apply


def _nested(depth: int) -> Json:
    """Return a marker that :meth:`Case.spoil` writes as arrays nested ``depth`` deep."""
    return f"<nested {depth}>"


_NESTED = re.compile(r'"<nested (\d+)>"')


mutations = st.one_of(
    st.builds(_set, st.sampled_from(FIELDS), json_values),
    st.builds(_delete, st.sampled_from(FIELDS)),
    st.builds(_set, st.just("files.0.name"), st.sampled_from(NAMES)),
    st.builds(_set, st.sampled_from(["started_at", "ended_at"]), st.sampled_from(TIMES)),
    st.builds(_set, st.sampled_from(FIELDS), st.integers(17, 3000).map(_nested)),
    st.builds(_set, st.just("extra"), json_values),
)


class Case:
    """One spoiled copy of the pristine storage, and the sentinel it must not touch."""

    def __init__(self, made: Made, base: Path, sentinel: Sentinel) -> None:
        self.made = made
        self.root = Path(tempfile.mkdtemp(dir=base))
        self.storage = LocalStorage(self.root / "backups")
        shutil.copytree(made.root, self.storage.root)
        self.outside = sentinel.path.parent

    def spoil(
        self, backup_id: str, changes: list[Mutation], raw_damage: int | None, link: str | None
    ) -> None:
        prefix = self.storage.root / find_backup(self.storage, backup_id).prefix
        path = prefix / MANIFEST
        data = json.loads(path.read_bytes())
        for change in changes:
            data = change(data)
        text = json.dumps(data).replace("{outside}", str(self.outside))
        text = _NESTED.sub(lambda m: "[" * int(m[1]) + "1" + "]" * int(m[1]), text)
        raw = text.encode("utf-8", "surrogatepass")
        if raw_damage is not None:  # bad UTF-8 somewhere
            where = raw_damage % (len(raw) + 1)
            raw = raw[:where] + b"\xff\xc3" + raw[where:]
        path.write_bytes(raw)
        if link == "archive" and (prefix / "data.dump").exists():
            (prefix / "data.dump").unlink()
            (prefix / "data.dump").symlink_to(self.outside / "sentinel")
        elif link == "data directory" and (prefix / "data").is_dir():
            shutil.rmtree(prefix / "data")
            (prefix / "data").symlink_to(self.outside, target_is_directory=True)
        elif link == "manifest":
            path.unlink()
            path.symlink_to(self.outside / "sentinel")


@pytest.fixture(scope="module")
def made(pg_server: TestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Made]:
    name = pg_server.create_database(template="template0")
    yield make_backups(pg_server.url(name), tmp_path_factory.mktemp("pristine") / "backups")
    pg_server.drop_database(name)


@pytest.fixture
def staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Return the only directory pgwarden may stage in (TMPDIR for the CLI too)."""
    path = tmp_path / "staging"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


def _library(case: Case, backup_id: str, target: Callable[[], str], staging: Path) -> None:
    """Run list, info, verify and restore; each returns correctly or raises cleanly."""
    storage, source = case.storage, case.made.url
    assert any(entry.id == backup_id for entry in list_backups(storage))
    calls: list[Callable[[], object]] = [
        lambda: backup_info(storage, backup_id),
        lambda: verify_backup(storage, backup_id, source, amcheck=False, staging_dir=staging),
    ]
    for jobs in (1, 2):
        url = target()

        def restore(url: str = url, jobs: int = jobs) -> None:
            restore_backup(storage, backup_id, url, jobs=jobs, staging_dir=staging)
            assert checksums(url) == checksums(source)  # a restore that ends is right

        calls.append(restore)
    for call in calls:
        try:
            call()
            event("a correct result")
        except PgwardenError as exc:
            event(type(exc).__name__)


def _cli(case: Case, backup_id: str, target: Callable[[], str], staging: Path) -> None:
    where = ["--storage", str(case.storage.root)]
    listed = run("backup", "list", *where)
    assert listed.exit_code == 0 and backup_id in listed.stdout, listed.output
    commands = [
        ["--json", "backup", "list"],
        ["backup", "info", backup_id],
        ["--database-url", case.made.url, "backup", "verify", backup_id, "--no-amcheck"],
        ["restore", backup_id, "--target-url", target(), "--staging-dir", str(staging)],
        ["restore", backup_id, "--target-url", target(), "--jobs", "2"],
        ["restore", backup_id, "--list"],
    ]
    for command in commands:
        result = run(*command, *where)
        assert clean_end(result), (command, result.output)


@pytest.mark.slow
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    which=st.sampled_from(["custom", "directory"]),
    changes=st.lists(mutations, min_size=1, max_size=3),
    raw_damage=st.none() | st.integers(0, 10_000),
    link=st.sampled_from([None, None, None, "archive", "data directory", "manifest"]),
)
def test_mutated_manifests_end_cleanly_and_touch_nothing_outside(
    which: str,
    changes: list[Mutation],
    raw_damage: int | None,
    link: str | None,
    made: Made,
    staging: Path,
    tmp_path: Path,
    pg_server: TestServer,
) -> None:
    sentinel = Sentinel.plant(tmp_path / "outside" / "sentinel")
    case = Case(made, tmp_path, sentinel)
    backup_id = made.custom if which == "custom" else made.directory
    created: list[str] = []

    def target() -> str:
        created.append(pg_server.create_database(template="template0"))
        return pg_server.url(created[-1])

    try:
        case.spoil(backup_id, changes, raw_damage, link)
        _library(case, backup_id, target, staging)
        _cli(case, backup_id, target, staging)
        assert sentinel.untouched()
        assert list(staging.iterdir()) == []
    finally:
        for name in created:
            pg_server.drop_database(name)
        shutil.rmtree(case.root)
    assert user_tables(made.url) == ["public.authors", "public.books"]
