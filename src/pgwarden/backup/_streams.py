"""Streams of a backup's bytes: hashed on the way in, checked on the way out.

Writing, each file is hashed twice as it streams: its plaintext (what pg_dump wrote)
and its stored bytes (after encryption). Reading, :func:`read_checked` proves both: the
stored size first (a cut file fails before a byte is read), every encrypted chunk's
authentication tag as it comes, and the SHA-256 of the stored bytes and of the
plaintext at the end, before the last piece is handed on. A consumer that only acts
once the stream has ended (a restore in one transaction) never acts on a bad file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import TypeVar

from pgwarden.backup.crypto import BackupKeyring, decrypt_stream
from pgwarden.backup.errors import ChecksumMismatch, IntegrityFailed
from pgwarden.backup.manifest import StoredFile
from pgwarden.backup.storage import Storage
from pgwarden.errors import DecryptionFailed

__all__ = ["Digest", "held_back", "read_checked"]

T = TypeVar("T")


class Digest:
    """Count and SHA-256 the bytes that pass through :meth:`watch`."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    def watch(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Yield ``chunks`` unchanged, hashing and counting them."""
        for chunk in chunks:
            self._hash.update(chunk)
            self.size += len(chunk)
            yield chunk

    @property
    def hexdigest(self) -> str:
        """Return the SHA-256 of what passed, in hex."""
        return self._hash.hexdigest()


def held_back(items: Iterable[T]) -> Iterator[T]:
    """Yield ``items``, each only once the next exists, and the last once the source ended.

    The source's end-of-stream checks run before its last item is released.
    """
    iterator = iter(items)
    try:
        previous = next(iterator)
    except StopIteration:
        return
    for item in iterator:
        yield previous
        previous = item
    yield previous


_CORRUPT_HINT = (
    "The stored file was damaged, cut short or changed after the backup. Use another copy "
    "of the backup (--copy-to storage), or another backup."
)


def read_checked(
    storage: Storage,
    key: str,
    stored: StoredFile,
    *,
    keyring: BackupKeyring | None,
    encrypted: bool,
    backup_id: str,
) -> Iterator[bytes]:
    """Yield the plaintext of one stored file of a backup, proving it as it goes.

    Raise :class:`ChecksumMismatch` on a wrong size or SHA-256, :class:`IntegrityFailed`
    when an encrypted chunk does not authenticate (a changed byte, a cut, or a wrong key).
    """
    where = f"{stored.name} of backup {backup_id}"
    actual = storage.stat(key).size
    if actual != stored.size:
        cut = "cut short" if actual < stored.size else "extended"
        raise ChecksumMismatch(
            f"{where} is {actual} bytes in {storage.url}; the manifest says {stored.size}: "
            f"it was {cut}.",
            hint=_CORRUPT_HINT,
        )
    outer = Digest()

    def stored_bytes() -> Iterator[bytes]:
        yield from outer.watch(storage.read_chunks(key))
        if outer.size != stored.size or outer.hexdigest != stored.sha256:
            raise ChecksumMismatch(
                f"{where} does not match its checksum: SHA-256 {outer.hexdigest[:16]}... "
                f"({outer.size} bytes), the manifest says {stored.sha256[:16]}... "
                f"({stored.size} bytes).",
                hint=_CORRUPT_HINT,
            )

    plain: Iterable[bytes] = stored_bytes()
    if encrypted:
        if keyring is None:
            raise IntegrityFailed(f"{where} is encrypted and no keyring was given.")
        plain = decrypt_stream(plain, keyring)
    inner = Digest()
    try:
        yield from inner.watch(plain)
    except DecryptionFailed as exc:
        raise IntegrityFailed(
            f"{where} cannot be decrypted: {exc.message}", hint=exc.hint
        ) from None
    if inner.size != stored.plain_size or inner.hexdigest != stored.plain_sha256:
        raise ChecksumMismatch(
            f"the decrypted {where} does not match its checksum.",
            hint="The key decrypts it, yet it is not the file the manifest describes: the "
            "object was replaced. Use another copy of the backup.",
        )
