"""Read a stored backup back: prove its files, stage them locally, find its keyring.

Every byte read goes through :class:`~pgwarden.backup._streams.CheckedRead`, so a file
is proved (size, SHA-256, authenticated decryption) whatever it is read for.
"""

from __future__ import annotations

import errno
import functools
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from pgwarden.backup._streams import CheckedRead, held_back
from pgwarden.backup.crypto import BackupKeyring
from pgwarden.backup.errors import ManifestInvalid
from pgwarden.backup.manifest import Manifest, StoredFile
from pgwarden.backup.progress import ProgressCallback, counted, no_progress
from pgwarden.backup.storage import Storage, check_key
from pgwarden.errors import ConfigError, UserError

__all__ = [
    "Pipes",
    "check_files",
    "keyring_for",
    "major",
    "pipes",
    "read_file",
    "stage",
    "staging_directory",
]


def keyring_for(manifest: Manifest, keyring: BackupKeyring | None) -> BackupKeyring | None:
    """Return ``keyring``, or raise a configuration error if the backup needs one."""
    if manifest.encrypted and keyring is None:
        raise ConfigError(
            f"backup {manifest.id} is encrypted with key id {manifest.key_id!r}, and no "
            "encryption key is configured.",
            hint="Set PGWARDEN_ENCRYPTION_KEYS to a list holding that key.",
        )
    return keyring


def check_files(
    storage: Storage,
    manifest: Manifest,
    prefix: str,
    *,
    keyring: BackupKeyring | None,
    on_progress: ProgressCallback = no_progress,
) -> int:
    """Read every stored file of a backup and prove it; return the plaintext bytes read.

    Raise :class:`ChecksumMismatch` or :class:`IntegrityFailed` at the first fault.
    """
    total = sum(f.plain_size for f in manifest.files)
    done = 0
    for stored in manifest.files:
        chunks = read_file(storage, manifest, prefix, stored, keyring)
        for chunk in counted(chunks, "check", on_progress, total=total, start=done):
            del chunk
        done += stored.plain_size
    return done


def read_file(
    storage: Storage,
    manifest: Manifest,
    prefix: str,
    stored: StoredFile,
    keyring: BackupKeyring | None,
) -> CheckedRead:
    """Return the proved plaintext of one stored file of a backup, chunk by chunk."""
    return CheckedRead(
        storage,
        prefix + stored.name,
        stored,
        keyring=keyring,
        encrypted=manifest.encrypted,
        backup_id=manifest.id,
        compressed=manifest.compression.by_pgwarden,
    )


def _staged_paths(
    manifest: Manifest, prefix: str, archive: Path, only: str | None
) -> list[tuple[StoredFile, Path]]:
    """Return each file to stage and where it goes, every path checked before any is opened.

    The manifest's schema allows only ``data.dump`` and ``data/<plain segment>``; this
    checks again, on the paths themselves, that each stays inside ``archive``.
    """
    base = archive.parent.resolve() if manifest.dump_format == "custom" else archive.resolve()
    planned = []
    for stored in manifest.files:
        check_key(prefix + stored.name)
        name = stored.name.removeprefix("data/").removesuffix(".enc")
        if only is not None and name != only:
            continue
        path = archive if manifest.dump_format == "custom" else archive / name
        if "/" in name or name in ("", ".", "..") or path.resolve().parent != base:
            raise ManifestInvalid(
                f"backup {manifest.id} names a file {stored.name!r} that would be written "
                f"outside its staging directory {archive}.",
                hint="The manifest was altered; use another copy of the backup.",
            )
        planned.append((stored, path))
    return planned


def stage(
    storage: Storage,
    manifest: Manifest,
    prefix: str,
    keyring: BackupKeyring | None,
    directory: Path,
    on_progress: ProgressCallback,
    *,
    only: str | None = None,
) -> Path:
    """Write the proved plaintext of a backup's files into ``directory``; return the archive.

    Every file is created anew (never through a symbolic link, never over a file) in a
    directory of this process's own.
    """
    archive = directory / ("data.dump" if manifest.dump_format == "custom" else "dump")
    planned = _staged_paths(manifest, prefix, archive, only)
    if manifest.dump_format == "directory":
        archive.mkdir(mode=0o700)
    total = sum(f.plain_size for f in manifest.files)
    done = 0
    for stored, path in planned:
        chunks = read_file(storage, manifest, prefix, stored, keyring)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as handle:
            for chunk in counted(chunks, "download", on_progress, total=total, start=done):
                handle.write(chunk)
        done += stored.plain_size
    return archive


def pipes(
    storage: Storage,
    manifest: Manifest,
    prefix: str,
    keyring: BackupKeyring | None,
    directory: Path,
) -> tuple[Path, Pipes]:
    """Lay out a directory-format backup in ``directory`` without staging its data.

    ``toc.dat`` is written (proved); every other file is a named pipe that the returned
    :class:`Pipes` fills from the storage, proved as it goes, when pg_restore opens it.
    """
    archive = directory / "dump"
    planned = _staged_paths(manifest, prefix, archive, None)
    archive.mkdir(mode=0o700)
    fed: list[tuple[Path, Callable[[], CheckedRead]]] = []
    for stored, path in planned:
        if path.name == "toc.dat":
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as handle:
                for chunk in read_file(storage, manifest, prefix, stored, keyring):
                    handle.write(chunk)
        else:
            os.mkfifo(path, 0o600)
            fed.append(
                (path, functools.partial(read_file, storage, manifest, prefix, stored, keyring))
            )
    return archive, Pipes(fed)


class Pipes:
    """Fill named pipes from the storage as a reader opens each, on threads.

    A pipe is filled when it has a reader: it is opened for writing without blocking
    until that succeeds. The last piece of each file is held back until the file is
    proved; a file that fails its proof calls ``on_error`` (which stops the readers)
    before its pipe is closed, so a reader never takes a damaged file for a whole one.
    """

    def __init__(self, fed: list[tuple[Path, Callable[[], CheckedRead]]]) -> None:
        self.errors: list[BaseException] = []
        self.on_error: Callable[[], None] = lambda: None
        self._pending = dict(fed)
        self._stop = threading.Event()
        self._writers: list[threading.Thread] = []
        self._watcher = threading.Thread(target=self._watch, name="pgwarden-pipes", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while self._pending and not self._stop.is_set():
            for path in list(self._pending):
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                except OSError as exc:
                    if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                        self._pending.pop(path)
                        self._failed(exc)
                    continue
                os.set_blocking(fd, True)
                source = self._pending.pop(path)
                writer = threading.Thread(target=self._write, args=(fd, source), daemon=True)
                writer.start()
                self._writers.append(writer)
            self._stop.wait(0.02)

    def _write(self, fd: int, source: Callable[[], CheckedRead]) -> None:
        out = os.fdopen(fd, "wb")
        try:
            for chunk in held_back(source()):
                out.write(chunk)
        except BrokenPipeError:
            pass  # the reader stopped: its own error says why
        except BaseException as exc:  # handed to the restore by close()
            self._failed(exc)
        finally:
            with suppress(OSError):
                out.close()

    def _failed(self, exc: BaseException) -> None:
        self.errors.append(exc)
        self.on_error()

    def close(self) -> None:
        """Stop filling pipes (the readers are done) and wait for the writers."""
        self._stop.set()
        self._watcher.join()
        for writer in self._writers:
            writer.join()


def major(version: str) -> int:
    """Return the major version of ``"18.6"``."""
    return int(version.split(".")[0])


@contextmanager
def staging_directory(parent: Path | None, prefix: str) -> Iterator[Path]:
    """Yield a new local directory under ``parent`` (default: TMPDIR), removed after."""
    try:
        temp = tempfile.TemporaryDirectory(prefix=prefix, dir=parent)
    except OSError as exc:
        raise UserError(
            f"cannot create a staging directory in {parent or tempfile.gettempdir()}: "
            f"{exc.strerror or exc}.",
            hint="Give --staging-dir a writable directory with room for the backup.",
        ) from None
    with temp as name:
        yield Path(name)
