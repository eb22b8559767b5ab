"""Keyed pseudo-random functions on AES, fast a whole column at a time.

The fakes and the integer permutation need a keyed PRF evaluated a million times a
table. Hashing one value at a time costs Python work per value; AES lets a column go
through OpenSSL in a few calls instead: every value's block ``j`` is encrypted in one
AES-ECB call, and numpy does the chaining between calls. So no Python code runs per
value, and AES-NI does the rest.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

__all__ = ["BlockPRF", "ValuePRF"]

_BLOCK = 16
_ZERO_IV = bytes(_BLOCK)


class _Encryptors(threading.local):
    """An AES-ECB encryptor per thread: one context must not be used by two at once."""

    def __init__(self, cipher: Cipher[Any]) -> None:
        self.cipher = cipher
        self.encryptor: CipherContext = cipher.encryptor()


class BlockPRF:
    """AES-256 of 16-byte blocks, one at a time or a matrix of them in one call."""

    def __init__(self, key: bytes) -> None:
        # ECB: each block is one PRF input on its own, not a piece of a message to hide.
        self.cipher = Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305
        self.local = _Encryptors(self.cipher)

    def block(self, data: bytes) -> bytes:
        """Return the encryption of ``data``, a whole number of blocks."""
        return self.local.encryptor.update(data)

    def blocks(self, matrix: Any) -> Any:
        """Return the encryption of each row of ``matrix`` (uint8, 16 a row), as a matrix."""
        data = self.local.encryptor.update(np.ascontiguousarray(matrix).data)
        return np.frombuffer(data, dtype=np.uint8).reshape(-1, _BLOCK)


class ValuePRF:
    """A keyed PRF from byte strings to 32 bytes: a length-prefixed CBC-MAC, stretched.

    The input is encoded as its length (4 bytes, little-endian), its bytes and zeros up
    to a whole number of blocks. The length in front makes the encoding prefix-free, so
    the AES-256 CBC-MAC of it is a PRF on inputs of any length. Its 16-byte tag ``t`` is
    stretched to 32 bytes by encrypting ``t`` and ``t`` with its last bit flipped under
    a second key. Both keys are HMAC-SHA256 of ``key``.

    :meth:`many` computes a column at once: block position by block position across
    all values, one AES-ECB call a position. :meth:`one` gives the same bytes for one.
    """

    # Values of more blocks than this go one at a time: a long value would otherwise
    # make every short value of its column carry its width.
    WIDE = 16

    def __init__(self, key: bytes) -> None:
        self.mac_key = hmac.digest(key, b"cbc-mac", "sha256")
        self.mac = BlockPRF(self.mac_key)
        self.stretch = BlockPRF(hmac.digest(key, b"stretch", "sha256"))

    def one(self, value: bytes) -> bytes:
        """Return the 32-byte PRF of ``value``."""
        tag = self._tag(value)
        return self.stretch.block(tag + tag[:-1] + bytes([tag[-1] ^ 1]))

    def _tag(self, value: bytes) -> bytes:
        """Return the CBC-MAC tag of ``value``'s encoding."""
        encoded = len(value).to_bytes(4, "little") + value
        encoded += bytes(-len(encoded) % _BLOCK)
        if len(encoded) > self.WIDE * _BLOCK:  # a cipher context costs less than the loop
            cbc = Cipher(algorithms.AES(self.mac_key), modes.CBC(_ZERO_IV)).encryptor()
            return cbc.update(encoded)[-_BLOCK:]
        state = 0
        for start in range(0, len(encoded), _BLOCK):
            block = int.from_bytes(encoded[start : start + _BLOCK], "little") ^ state
            state = int.from_bytes(self.mac.block(block.to_bytes(_BLOCK, "little")), "little")
        return state.to_bytes(_BLOCK, "little")

    def many(self, values: Sequence[bytes]) -> Any:
        """Return the PRF of every value as an ``(n, 32)`` uint8 array, in order."""
        count = len(values)
        lengths = np.fromiter(map(len, values), dtype=np.uint32, count=count)
        blocks = (lengths + 4 + _BLOCK - 1) // _BLOCK
        tags = np.empty((count, _BLOCK), dtype=np.uint8)
        wide = np.flatnonzero(blocks > self.WIDE)
        rows = np.flatnonzero(blocks <= self.WIDE) if len(wide) else np.arange(count)
        for row in wide.tolist():
            tags[row] = np.frombuffer(self._tag(values[row]), dtype=np.uint8)
        if len(rows):
            self._tags(values, lengths, blocks, rows, tags)
        pairs = np.empty((count, 2, _BLOCK), dtype=np.uint8)
        pairs[:, 0] = tags
        pairs[:, 1] = tags
        pairs[:, 1, -1] ^= 1
        return self.stretch.blocks(pairs.reshape(-1, _BLOCK)).reshape(count, 2 * _BLOCK)

    def _tags(
        self, values: Sequence[bytes], lengths: Any, blocks: Any, rows: Any, tags: Any
    ) -> None:
        """Put the CBC-MAC tag of each value of ``rows`` (no wider than WIDE) in ``tags``.

        The rows go shortest first, so the values still being chained at a block
        position are always the tail of the matrix: slices, no gathering.
        """
        ends = blocks[rows]
        chosen = values if len(rows) == len(values) else None  # rows is every row, in order
        if not (ends[:-1] <= ends[1:]).all():  # most often every value has as many blocks
            order = np.argsort(ends, kind="stable")
            rows, ends, chosen = rows[order], ends[order], None
        if chosen is None:
            chosen = [values[i] for i in rows.tolist()]
        width = int(lengths[rows].max())
        last = int(ends[-1])
        encoded = np.zeros((len(rows), last * _BLOCK), dtype=np.uint8)
        encoded[:, :4] = lengths[rows].astype("<u4").view(np.uint8).reshape(-1, 4)
        if width:
            texts = np.array(chosen, dtype=f"S{width}").view(np.uint8).reshape(-1, width)
            encoded[:, 4 : 4 + width] = texts
        # finished[p]: how many rows end at or before block p + 1
        finished = np.searchsorted(ends, np.arange(1, last + 1), side="right").tolist()
        begin = 0
        state = None
        for position in range(last):
            block = encoded[begin:, position * _BLOCK : (position + 1) * _BLOCK]
            state = self.mac.blocks(block if state is None else state ^ block)
            end = finished[position]
            if end > begin:
                tags[rows[begin:end]] = state[: end - begin]
                state = state[end - begin :]
                begin = end
