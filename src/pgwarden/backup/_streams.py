"""Streams of a backup's bytes: hashed on the way in, checked on the way out.

Writing, each file is hashed twice as it streams: its plaintext (what pg_dump wrote)
and its stored bytes (after compression and encryption). Reading, :class:`CheckedRead`
proves both: the stored size first (a cut file fails before a byte is read), every
encrypted chunk's authentication tag as it comes, the zstd frame's own checksum and end
when pgwarden compressed it, and the SHA-256 of the stored bytes and of the plaintext at
the end, before the last piece is handed on. A consumer that only acts once the stream
has ended (a restore in one transaction) never acts on a bad file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import TypeVar

import zstandard

from pgwarden.backup.crypto import BackupKeyring, decrypt_stream
from pgwarden.backup.errors import ChecksumMismatch, IntegrityFailed
from pgwarden.backup.manifest import StoredFile
from pgwarden.backup.storage import Storage
from pgwarden.errors import DecryptionFailed

__all__ = ["CheckedRead", "Digest", "compress_stream", "decompress_stream", "held_back"]

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


def compress_stream(chunks: Iterable[bytes], *, level: int, threads: int) -> Iterator[bytes]:
    """Yield ``chunks`` as one zstd frame, with its content checksum.

    ``threads`` above 1 compresses on that many native threads beside this one (the
    compressor releases the GIL), so pg_dump, the hashing and the upload keep going.
    """
    compressor = zstandard.ZstdCompressor(
        level=level, threads=threads if threads > 1 else 0, write_checksum=True
    ).compressobj()
    for chunk in chunks:
        if out := compressor.compress(chunk):
            yield out
    yield compressor.flush()


# Input is handed to the decompressor in small pieces: one call's output is bounded
# (a crafted frame cannot blow up in memory at once), and small pieces measured fastest.
_PIECE = 16 * 1024
_OUT = 1024 * 1024


def decompress_stream(chunks: Iterable[bytes], *, where: str) -> Iterator[bytes]:
    """Yield the content of the zstd frame ``chunks`` hold, in pieces of about 1 MiB.

    Raise :class:`IntegrityFailed` if the frame is damaged (its checksum fails), cut
    short, or followed by other bytes: ``where`` names the file in the message.
    """
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    pending: list[bytes] = []
    held = 0
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            for start in range(0, len(view), _PIECE):
                if decompressor.eof:
                    raise _not_zstd(where, "its zstd stream is followed by other bytes")
                out = decompressor.decompress(view[start : start + _PIECE])
                if out:
                    pending.append(out)
                    held += len(out)
                    if held >= _OUT:
                        yield b"".join(pending)
                        pending, held = [], 0
    except zstandard.ZstdError as exc:
        raise _not_zstd(where, f"its zstd stream is damaged ({exc})") from None
    if not decompressor.eof or decompressor.unused_data:
        what = "cut short" if not decompressor.eof else "followed by other bytes"
        raise _not_zstd(where, f"its zstd stream is {what}")
    if pending:
        yield b"".join(pending)


def _not_zstd(where: str, what: str) -> IntegrityFailed:
    return IntegrityFailed(
        f"{where} cannot be decompressed: {what}.",
        hint="The stored file was damaged or written by something else than pgwarden. Use "
        "another copy of the backup (--copy-to storage), or another backup.",
    )


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
        compressed: bool = False,
    ) -> None:
        self.storage = storage
        self.key = key
        self.stored = stored
        self.keyring = keyring
        self.encrypted = encrypted
        self.compressed = compressed
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
        packed = iter(plain)
        if self.compressed:
            plain = decompress_stream(packed, where=where)
        inner = Digest()
        try:
            yield from inner.watch(plain)
        except DecryptionFailed as exc:
            raise IntegrityFailed(
                f"{where} cannot be decrypted: {exc.message}", hint=exc.hint
            ) from None
        except IntegrityFailed:
            # A damaged zstd stream: if the stored bytes fail their checksum, that is
            # the verdict (the file was changed), whichever of the two noticed first.
            try:
                for _ in packed:
                    pass
            except DecryptionFailed as exc:
                raise IntegrityFailed(
                    f"{where} cannot be decrypted: {exc.message}", hint=exc.hint
                ) from None
            raise
        if inner.size != stored.plain_size or inner.hexdigest != stored.plain_sha256:
            raise ChecksumMismatch(
                f"the decrypted {where} does not match its checksum.",
                hint="The key decrypts it, yet it is not the file the manifest describes: the "
                "object was replaced. Use another copy of the backup.",
            )
