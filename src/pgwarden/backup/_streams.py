"""Streams of a backup's bytes: hashed on the way in, checked on the way out.

Writing, each file is hashed twice as it streams: its plaintext (what pg_dump wrote)
and its stored bytes (after encryption). Reading, :class:`CheckedRead` proves both: the
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

__all__ = ["CheckedRead", "Digest", "held_back"]

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


class CheckedRead:
    """Yield the plaintext of one stored file of a backup, proving it as it goes.

    The stored size is checked first (a cut file fails before a byte is read), every
    encrypted chunk's authentication as it comes, and the SHA-256 of the stored bytes
    and of the plaintext at the end, before the last piece is handed on. Iterating
    raises :class:`ChecksumMismatch` on a wrong size or SHA-256, :class:`IntegrityFailed`
    when an encrypted chunk does not authenticate (a changed byte, a cut, or a wrong key).

    :meth:`finish` reads whatever a consumer left unread and completes the proof, so a
    consumer that failed on the bytes (pg_restore choking on a changed byte) learns
    whether the file itself was bad: the verdict on integrity never depends on which of
    the load and the checksum fails first.
    """

    def __init__(
        self,
        storage: Storage,
        key: str,
        stored: StoredFile,
        *,
        keyring: BackupKeyring | None,
        encrypted: bool,
        backup_id: str,
    ) -> None:
        self.storage = storage
        self.key = key
        self.stored = stored
        self.keyring = keyring
        self.encrypted = encrypted
        self.backup_id = backup_id
        self.proved = False
        self._chunks = self._read()

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def _read(self) -> Iterator[bytes]:
        yield from self._checked()
        self.proved = True

    def finish(self) -> None:
        """Read the rest and prove the whole file; raise :class:`IntegrityFailed` if it fails.

        A stream that was closed or failed before its end is read again from the start.
        """
        for _ in self._chunks:
            pass
        if not self.proved:
            for _ in self._checked():
                pass
            self.proved = True

    def _checked(self) -> Iterator[bytes]:
        storage, key, stored, keyring = self.storage, self.key, self.stored, self.keyring
        encrypted, backup_id = self.encrypted, self.backup_id
        where = f"{stored.name} of backup {backup_id}"
        actual = storage.stat(key).size
        if actual != stored.size:
            cut = "cut short" if actual < stored.size else "extended"
            raise ChecksumMismatch(
                f"{where} does not match its checksum: it is {actual} bytes in {storage.url}, "
                f"the manifest says {stored.size}: it was {cut}.",
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
