"""Encrypt backup streams of any size with AES-256-GCM, a chunk at a time, authenticated.

The format (all integers big-endian)::

    header  magic  b"PGWCRYPT"                 8 bytes
            version 1                          1 byte
            chunk size (plaintext bytes)       4 bytes
            key id length, key id (ASCII)      1 + n bytes
            salt, random per stream            32 bytes
    chunks  ciphertext + 16-byte GCM tag, one per plaintext chunk

Each stream has its own key, ``HKDF-SHA256(master key, salt)``, so chunk nonces can be
counters: chunk ``i`` is sealed with nonce ``00 00 00 | i (8 bytes) | final (1 byte)``
and associated data ``header | i (8 bytes) | final (1 byte)``. Every chunk but the last
holds exactly ``chunk size`` bytes; the last, flagged final, holds 0 to ``chunk size``
(an empty stream is one empty final chunk). Hence a changed byte anywhere (the header
too), chunks reordered or dropped, a stream cut at a chunk boundary, or bytes appended
all fail to authenticate, and each chunk is checked before its plaintext is released.

Keys come from ``PGWARDEN_ENCRYPTION_KEYS`` (``id:base64,...``; the first encrypts),
the same setting the encrypted columns use. A manifest records the key id, never a key.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, BinaryIO, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pgwarden._encryption_keys import (
    FORM_HINT,
    KEY_BYTES,
    SETTING,
    check_key_id,
    parse_key_setting,
)
from pgwarden.errors import ConfigError, DecryptionFailed, UnknownKey

if TYPE_CHECKING:
    from pgwarden.config import Settings

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAGIC",
    "BackupKeyring",
    "decrypt_stream",
    "encrypt_stream",
    "read_key_id",
]

MAGIC = b"PGWCRYPT"
VERSION = 1
DEFAULT_CHUNK_SIZE = 1024 * 1024
MIN_CHUNK_SIZE = 16
MAX_CHUNK_SIZE = 64 * 1024 * 1024
SALT_BYTES = 32
TAG_BYTES = 16
_FIXED = struct.Struct(">8sBIB")  # magic, version, chunk size, key id length
_INFO = b"pgwarden backup stream v1"


class BackupKeyring:
    """Hold the master keys of backups by id; the primary encrypts, any decrypts."""

    __slots__ = ("_keys", "_primary")

    def __init__(self, keys: Mapping[str, bytes], primary: str) -> None:
        if not keys:
            raise ConfigError("a backup keyring needs at least one key.", hint=FORM_HINT)
        for key_id, key in keys.items():
            check_key_id(key_id)
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise ConfigError(
                    f"encryption key {key_id!r} is not {KEY_BYTES} bytes long.", hint=FORM_HINT
                )
        if primary not in keys:
            raise ConfigError(
                f"the primary key id {primary!r} is not in the keyring.",
                hint="Name one of the keyring's ids as primary.",
            )
        self._keys = dict(keys)
        self._primary = primary

    @classmethod
    def from_setting(cls, text: str) -> BackupKeyring:
        """Parse ``"k2:BASE64KEY,k1:BASE64KEY"``; the first key is the primary."""
        keys = parse_key_setting(text)
        return cls(keys, primary=next(iter(keys)))

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> BackupKeyring:
        """Return the keyring of ``PGWARDEN_ENCRYPTION_KEYS`` in ``settings`` (else loaded)."""
        if settings is None:
            from pgwarden.config import load_settings

            settings = load_settings()
        if not settings.encryption_keys:
            raise ConfigError(
                f"{SETTING} is not set; there is no key to encrypt backups with.",
                hint=FORM_HINT,
            )
        return cls.from_setting(settings.encryption_keys)

    @property
    def primary(self) -> str:
        """Return the id of the key that encrypts."""
        return self._primary

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Return the ids of every key held, the primary first."""
        return (self._primary, *(key_id for key_id in self._keys if key_id != self._primary))

    def __repr__(self) -> str:
        return f"BackupKeyring(key_ids={self.key_ids!r}, primary={self._primary!r})"

    def _stream_cipher(self, key_id: str, salt: bytes) -> AESGCM:
        key = self._keys.get(key_id)
        if key is None:
            raise UnknownKey(
                f"the backup was encrypted with key id {key_id!r}, which the keyring "
                f"(ids {', '.join(self.key_ids)}) does not hold.",
                hint=f"Add key {key_id!r} to {SETTING}, after the primary key.",
            )
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO).derive(key)
        return AESGCM(derived)


def _header(key_id: str, chunk_size: int, salt: bytes) -> bytes:
    encoded = key_id.encode("ascii")
    return _FIXED.pack(MAGIC, VERSION, chunk_size, len(encoded)) + encoded + salt


def _nonce_and_aad(header: bytes, index: int, final: bool) -> tuple[bytes, bytes]:
    position = struct.pack(">QB", index, final)
    return b"\0\0\0" + position, header + position


def _chunks(data: Iterable[bytes] | BinaryIO) -> Iterator[bytes]:
    if hasattr(data, "read"):
        handle = cast(BinaryIO, data)
        while block := handle.read(DEFAULT_CHUNK_SIZE):
            yield block
    else:
        yield from data


def encrypt_stream(
    data: Iterable[bytes] | BinaryIO,
    keyring: BackupKeyring,
    *,
    key_id: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Iterator[bytes]:
    """Yield the header, then one sealed chunk per ``chunk_size`` bytes of ``data``.

    ``data`` is an iterable of bytes (of any sizes) or a binary file. ``key_id`` picks
    a key other than the primary; memory use is about two chunks.
    """
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ConfigError(
            f"the encryption chunk size must be {MIN_CHUNK_SIZE}-{MAX_CHUNK_SIZE} bytes, "
            f"not {chunk_size}."
        )
    key_id = key_id or keyring.primary
    salt = os.urandom(SALT_BYTES)
    cipher = keyring._stream_cipher(key_id, salt)  # raises UnknownKey before any output
    return _encrypt(data, cipher, _header(key_id, chunk_size, salt), chunk_size)


def _encrypt(
    data: Iterable[bytes] | BinaryIO, cipher: AESGCM, header: bytes, chunk_size: int
) -> Iterator[bytes]:
    yield header
    buffer = bytearray()
    index = 0
    for block in _chunks(data):
        buffer += block
        # A full chunk is sealed only once more data follows it: the last must be final.
        while len(buffer) > chunk_size:
            nonce, aad = _nonce_and_aad(header, index, False)
            yield cipher.encrypt(nonce, bytes(buffer[:chunk_size]), aad)
            del buffer[:chunk_size]
            index += 1
    nonce, aad = _nonce_and_aad(header, index, True)
    yield cipher.encrypt(nonce, bytes(buffer), aad)


def _parse_header(buffer: bytearray) -> tuple[str, int, bytes, int] | None:
    """Return the key id, chunk size, salt and header length, or None if incomplete."""
    if len(buffer) < _FIXED.size:
        if not MAGIC.startswith(bytes(buffer[: len(MAGIC)])):
            raise _not_ours()
        return None
    magic, version, chunk_size, id_length = _FIXED.unpack_from(buffer)
    if magic != MAGIC:
        raise _not_ours()
    if version != VERSION:
        raise DecryptionFailed(
            f"the backup stream has encryption format version {version}; this pgwarden "
            f"reads version {VERSION}.",
            hint="Decrypt it with the pgwarden version that wrote it, or a newer one.",
        )
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE or not id_length:
        raise DecryptionFailed(
            "the header of the encrypted backup stream is malformed; it was changed.",
            hint="Use another copy of the backup.",
        )
    length = _FIXED.size + id_length + SALT_BYTES
    if len(buffer) < length:
        return None
    try:
        key_id = bytes(buffer[_FIXED.size : _FIXED.size + id_length]).decode("ascii")
    except UnicodeDecodeError:
        raise DecryptionFailed(
            "the key id in the encrypted backup stream is malformed; it was changed.",
            hint="Use another copy of the backup.",
        ) from None
    return key_id, chunk_size, bytes(buffer[length - SALT_BYTES : length]), length


def _not_ours() -> DecryptionFailed:
    return DecryptionFailed(
        "the data is not a pgwarden encrypted backup stream (its first bytes are not "
        f"{MAGIC.decode()}).",
        hint="Check that the object was written encrypted; an unencrypted backup needs no key.",
    )


def read_key_id(head: bytes) -> str:
    """Return the id of the key that encrypted the stream starting with ``head``.

    ``head`` needs only the header (at most 110 bytes); nothing is decrypted.
    """
    parsed = _parse_header(bytearray(head))
    if parsed is None:
        raise _truncated(0, header=True)
    return parsed[0]


def decrypt_stream(data: Iterable[bytes] | BinaryIO, keyring: BackupKeyring) -> Iterator[bytes]:
    """Yield the plaintext of an encrypted stream, one checked chunk at a time.

    Raise :class:`DecryptionFailed` at the first chunk that does not authenticate (a
    changed byte, chunks reordered, dropped or appended) or if the stream is cut short,
    before yielding any of that chunk; :class:`UnknownKey` if the keyring lacks its key.
    """
    buffer = bytearray()
    parsed = None
    cipher: AESGCM | None = None
    header = b""
    index = 0
    sealed = 0
    for block in _chunks(data):
        buffer += block
        if parsed is None:
            parsed = _parse_header(buffer)
            if parsed is None:
                continue
            key_id, chunk_size, salt, length = parsed
            cipher = keyring._stream_cipher(key_id, salt)
            header = bytes(buffer[:length])
            del buffer[:length]
            sealed = chunk_size + TAG_BYTES
        assert cipher is not None
        while len(buffer) > sealed:
            yield _open(cipher, header, index, bytes(buffer[:sealed]), final=False)
            del buffer[:sealed]
            index += 1
    if cipher is None:
        raise _truncated(0, header=True)
    if len(buffer) < TAG_BYTES:
        raise _truncated(index)
    yield _open(cipher, header, index, bytes(buffer), final=True)


def _open(cipher: AESGCM, header: bytes, index: int, chunk: bytes, *, final: bool) -> bytes:
    nonce, aad = _nonce_and_aad(header, index, final)
    try:
        return cipher.decrypt(nonce, chunk, aad)
    except InvalidTag:
        pass
    if final:
        # Would it authenticate as a middle chunk? Then the chunks after it are missing.
        nonce, aad = _nonce_and_aad(header, index, False)
        try:
            cipher.decrypt(nonce, chunk, aad)
        except InvalidTag:
            pass
        else:
            raise _truncated(index + 1)
    key_id = header[_FIXED.size : -SALT_BYTES].decode("ascii")
    raise DecryptionFailed(
        f"chunk {index} of the encrypted backup stream does not authenticate: the data "
        f"was changed, reordered or extended, or it was encrypted with another key than "
        f"the one of id {key_id!r} held now.",
        hint="Use another copy of the backup, and check that key "
        f"{key_id!r} in {SETTING} is the key that encrypted it.",
    )


def _truncated(chunks: int, *, header: bool = False) -> DecryptionFailed:
    where = "inside its header" if header else f"after {chunks} whole chunk(s)"
    return DecryptionFailed(
        f"the encrypted backup stream is truncated: it ends {where}, before its final chunk.",
        hint="The object was cut short (an interrupted upload or copy); use another copy "
        "of the backup.",
    )
