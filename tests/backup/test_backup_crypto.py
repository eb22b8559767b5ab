"""Chunked AES-256-GCM streams: round trips, and every kind of tampering detected."""

from __future__ import annotations

import base64
import os
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgwarden.backup.crypto import (
    MAGIC,
    TAG_BYTES,
    BackupKeyring,
    decrypt_stream,
    encrypt_stream,
    read_key_id,
)
from pgwarden.config import load_settings
from pgwarden.errors import ConfigError, DecryptionFailed, UnknownKey

CHUNK = 1024
KEY_1 = os.urandom(32)
KEY_2 = os.urandom(32)
KEYRING = BackupKeyring({"k2": KEY_2, "k1": KEY_1}, primary="k2")


def header_length(key_id: str = "k2") -> int:
    return 8 + 1 + 4 + 1 + len(key_id) + 32


def encrypt(data: bytes, *, chunk_size: int = CHUNK, keyring: BackupKeyring = KEYRING) -> bytes:
    return b"".join(encrypt_stream([data], keyring, chunk_size=chunk_size))


def decrypt(blob: bytes, *, keyring: BackupKeyring = KEYRING, piece: int = 777) -> bytes:
    return b"".join(decrypt_stream(split(blob, piece), keyring))


def split(blob: bytes, piece: int) -> Iterator[bytes]:
    for start in range(0, len(blob), piece):
        yield blob[start : start + piece]


def sealed_chunks(blob: bytes, chunk_size: int = CHUNK) -> tuple[bytes, list[bytes]]:
    """Split an encrypted stream into its header and its sealed chunks."""
    head = header_length()
    size = chunk_size + TAG_BYTES
    body = blob[head:]
    return blob[:head], [body[i : i + size] for i in range(0, len(body), size)]


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 5 * 1024 * 1024])
def test_round_trip(size: int) -> None:
    data = os.urandom(size)
    blob = encrypt(data)
    chunks = max(1, -(-size // CHUNK))
    assert len(blob) == header_length() + size + chunks * TAG_BYTES
    assert blob.startswith(MAGIC)
    assert decrypt(blob) == data


def test_default_chunk_size_and_file_input(tmp_path: pytest.TempPathFactory) -> None:
    data = os.urandom(2 * 1024 * 1024 + 5)
    source = tmp_path / "plain"  # type: ignore[operator]
    source.write_bytes(data)
    with source.open("rb") as handle:
        blob = b"".join(encrypt_stream(handle, KEYRING))
    target = tmp_path / "sealed"  # type: ignore[operator]
    target.write_bytes(blob)
    with target.open("rb") as handle:
        assert b"".join(decrypt_stream(handle, KEYRING)) == data


def test_same_plaintext_encrypts_differently() -> None:
    assert encrypt(b"same") != encrypt(b"same")


def test_key_id_is_recorded_and_any_held_key_decrypts() -> None:
    blob = b"".join(encrypt_stream([b"old"], KEYRING, key_id="k1", chunk_size=CHUNK))
    assert read_key_id(blob[:200]) == "k1"
    assert read_key_id(encrypt(b"x")) == "k2"
    assert decrypt(blob) == b"old"


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=5000),
    chunk_size=st.integers(min_value=16, max_value=700),
    pieces=st.lists(st.integers(min_value=1, max_value=900), min_size=1, max_size=5),
)
def test_round_trip_property(data: bytes, chunk_size: int, pieces: list[int]) -> None:
    # Feed the plaintext and the ciphertext in arbitrary piece sizes.
    cuts = []
    position = 0
    for n, piece in enumerate(pieces * (len(data) // max(1, sum(pieces)) + 1)):
        cuts.append(data[position : position + piece + n % 2])
        position += piece + n % 2
    cuts.append(data[position:])
    assert b"".join(cuts) == data
    blob = b"".join(encrypt_stream(cuts, KEYRING, chunk_size=chunk_size))
    assert b"".join(decrypt_stream(split(blob, pieces[0]), KEYRING)) == data


def _flipped(blob: bytes, position: int) -> bytes:
    damaged = bytearray(blob)
    damaged[position] ^= 0x01
    return bytes(damaged)


def test_a_flipped_byte_anywhere_fails() -> None:
    blob = encrypt(os.urandom(3 * CHUNK + 100))
    head = header_length()
    positions = {
        "magic": 0,
        "version": 8,
        "chunk size": 12,
        "key id": 14,
        "salt": head - 1,
        "first chunk": head + 5,
        "middle chunk": head + CHUNK + TAG_BYTES + 500,
        "a tag": head + CHUNK + 3,
        "last tag": len(blob) - 1,
    }
    for where, position in positions.items():
        with pytest.raises((DecryptionFailed, UnknownKey)):
            decrypt(_flipped(blob, position))
        assert where


def test_no_plaintext_is_released_from_a_bad_chunk() -> None:
    data = bytes(range(256)) * 16  # four chunks
    blob = encrypt(data)
    damaged = _flipped(blob, header_length() + 2 * (CHUNK + TAG_BYTES) + 10)  # in chunk 2
    stream = decrypt_stream(split(damaged, 100), KEYRING)
    released = [next(stream), next(stream)]
    with pytest.raises(DecryptionFailed, match="chunk 2 "):
        next(stream)
    assert b"".join(released) == data[: 2 * CHUNK]


@pytest.mark.parametrize("kept", [0, 1, 2])
def test_truncation_at_a_chunk_boundary_fails(kept: int) -> None:
    header, chunks = sealed_chunks(encrypt(os.urandom(3 * CHUNK + 10)))
    assert len(chunks) == 4
    with pytest.raises(DecryptionFailed, match="truncated") as raised:
        decrypt(header + b"".join(chunks[: kept + 1]))
    assert f"after {kept + 1} whole chunk" in raised.value.message


def test_truncation_inside_header_or_before_any_chunk_fails() -> None:
    blob = encrypt(b"data")
    for length in (0, 3, 20, header_length()):
        with pytest.raises(DecryptionFailed, match="truncated"):
            decrypt(blob[:length])


def test_truncation_inside_a_chunk_fails() -> None:
    blob = encrypt(os.urandom(2 * CHUNK))
    for length in (len(blob) - 1, len(blob) - TAG_BYTES, header_length() + CHUNK + 7):
        with pytest.raises(DecryptionFailed):
            decrypt(blob[:length])


def test_a_multiple_of_the_chunk_size_cut_at_a_boundary_fails() -> None:
    header, chunks = sealed_chunks(encrypt(os.urandom(2 * CHUNK)))
    assert len(chunks) == 2  # the second, full, is the final one
    with pytest.raises(DecryptionFailed, match="truncated"):
        decrypt(header + chunks[0])


def test_reordered_chunks_fail() -> None:
    header, chunks = sealed_chunks(encrypt(os.urandom(3 * CHUNK + 10)))
    with pytest.raises(DecryptionFailed, match="chunk 0 "):
        decrypt(header + chunks[1] + chunks[0] + chunks[2] + chunks[3])


def test_appended_data_fails() -> None:
    blob = encrypt(os.urandom(2 * CHUNK + 10))
    _, chunks = sealed_chunks(blob)
    for extra in (b"x", os.urandom(CHUNK + TAG_BYTES), chunks[0]):
        with pytest.raises(DecryptionFailed):
            decrypt(blob + extra)
    full = encrypt(os.urandom(2 * CHUNK))
    with pytest.raises(DecryptionFailed):
        decrypt(full + sealed_chunks(full)[1][0])


def test_chunks_from_another_stream_fail() -> None:
    header_a, chunks_a = sealed_chunks(encrypt(os.urandom(2 * CHUNK + 10)))
    _, chunks_b = sealed_chunks(encrypt(os.urandom(2 * CHUNK + 10)))
    with pytest.raises(DecryptionFailed, match="chunk 1 "):
        decrypt(header_a + chunks_a[0] + chunks_b[1] + chunks_a[2])


def test_wrong_key_and_unknown_key_id() -> None:
    blob = encrypt(b"secret data")
    impostor = BackupKeyring({"k2": os.urandom(32)}, primary="k2")
    with pytest.raises(DecryptionFailed, match="another key than the one of id 'k2'"):
        decrypt(blob, keyring=impostor)
    other = BackupKeyring({"k9": KEY_2}, primary="k9")
    with pytest.raises(UnknownKey, match=r"key id 'k2', which the keyring \(ids k9\) does not"):
        decrypt(blob, keyring=other)
    with pytest.raises(UnknownKey):
        list(encrypt_stream([b"x"], KEYRING, key_id="k7"))


def test_not_an_encrypted_stream() -> None:
    with pytest.raises(DecryptionFailed, match="not a pgwarden encrypted backup stream"):
        decrypt(b"PGDMP\x01\x0e\x00 a plain pg_dump archive" * 10)
    future = bytearray(encrypt(b"x"))
    future[8] = 2
    with pytest.raises(DecryptionFailed, match="format version 2"):
        decrypt(bytes(future))
    huge = bytearray(encrypt(b"x"))
    huge[9:13] = struct.pack(">I", 2**31)
    with pytest.raises(DecryptionFailed, match="malformed"):
        decrypt(bytes(huge))


def test_keyring_from_settings_never_quotes_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="PGWARDEN_ENCRYPTION_KEYS is not set"):
        BackupKeyring.from_settings(load_settings())
    encoded = base64.b64encode(KEY_1).decode()
    monkeypatch.setenv("PGWARDEN_ENCRYPTION_KEYS", f"new:{encoded},old:{encoded}")
    keyring = BackupKeyring.from_settings()
    assert keyring.primary == "new" and keyring.key_ids == ("new", "old")
    assert encoded not in repr(keyring)
    short = base64.b64encode(b"short").decode()
    with pytest.raises(ConfigError, match="5 bytes long") as raised:
        BackupKeyring.from_setting(f"k1:{short}")
    assert short not in f"{raised.value} {raised.value.hint}"
    with pytest.raises(ConfigError, match="chunk size"):
        list(encrypt_stream([b""], KEYRING, chunk_size=8))
