"""Read a stored backup back: prove its files, stage them locally, find its keyring.

Every byte read goes through :class:`~pgwarden.backup._streams.CheckedRead`, so a file
is proved (size, SHA-256, authenticated decryption) whatever it is read for.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pgwarden.backup._streams import CheckedRead
from pgwarden.backup.crypto import BackupKeyring
from pgwarden.backup.errors import ManifestInvalid
from pgwarden.backup.manifest import Manifest, StoredFile
from pgwarden.backup.progress import ProgressCallback, counted, no_progress
from pgwarden.backup.storage import Storage, check_key
from pgwarden.errors import ConfigError, UserError

__all__ = ["check_files", "keyring_for", "major", "read_file", "stage", "staging_directory"]


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
