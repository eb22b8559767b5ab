"""Keyed hashes that fit the column: hex text, a UUID, or a permuted integer."""

from __future__ import annotations

import hmac
import uuid
from contextlib import suppress
from functools import cache
from typing import Any

import numpy as np

from pgwarden.errors import UserError
from pgwarden.transfer.anonymize._prf import BlockPRF
from pgwarden.transfer.anonymize._values import (
    NULL,
    ColumnFunction,
    CopyFieldFunction,
    FieldFunction,
    Mac,
    ValueFunction,
    as_text,
    raw_value,
)

__all__ = ["keyed_hash"]

_INTEGER_BITS = {"smallint": 15, "integer": 31, "bigint": 63}
# Results kept per permutation, for keys that repeat (a foreign key, the key it references).
# A plain dict emptied when full: a lookup costs less than an LRU's bookkeeping.
_CACHE = 1 << 17


def keyed_hash(salt: bytes, namespace: str, column_type: str, length: int | None) -> ValueFunction:
    """Return a keyed hash fitting the column: hex text, a UUID, or a permuted integer.

    Integers go through a keyed permutation (a Feistel network over the type's range),
    so distinct keys stay distinct and foreign keys hashed the same way still match.
    """
    if column_type in _INTEGER_BITS:
        return _IntegerHash(_permutation(salt, namespace, _INTEGER_BITS[column_type]))
    return _TextHash(Mac(salt, namespace), uuid=column_type == "uuid", size=length or 64)


class _IntegerHash(CopyFieldFunction):
    def __init__(self, permute: _Permutation) -> None:
        self.permute = permute

    def __call__(self, value: Any) -> Any:
        if value is None:
            return None
        number = int(value)
        result = self.permute(abs(number)) * (-1 if number < 0 else 1)
        return str(result) if isinstance(value, str) else result

    def copy_field(self, field: bytes) -> bytes:
        return NULL if field == NULL else str(self(int(field))).encode()

    def column_function(self) -> ColumnFunction:
        # Keys repeat (a foreign key, and the key it references): the fields already
        # seen are looked up, by C loops, in a cache the permutation keeps; the others
        # are permuted together, in numpy and a few AES calls.
        permute = self.permute
        cache = permute.fields

        def column(fields: list[bytes]) -> list[bytes]:
            with suppress(KeyError):  # most often every field is there
                return list(map(cache.__getitem__, fields))
            missing = list(set(fields).difference(cache))
            if len(cache) + len(missing) > _CACHE:
                permute.clear()
                missing = list(set(fields).difference(cache))
            numbers = np.array(list(map(int, missing)), dtype=np.int64)
            magnitudes = np.abs(numbers).astype(np.uint64)  # -2**63 stays 2**63: too big
            if (too_big := np.flatnonzero(magnitudes >> permute.bits)).size:
                permute(int(magnitudes[too_big[0]]))  # raises the error saying which
            permuted = permute.many(magnitudes).astype(np.int64)
            permuted = np.where(numbers < 0, -permuted, permuted)
            cache.update(zip(missing, map(b"%d".__mod__, permuted.tolist()), strict=True))
            return list(map(cache.__getitem__, fields))

        return column


class _TextHash(CopyFieldFunction):
    def __init__(self, mac: Mac, *, uuid: bool, size: int) -> None:
        self.mac = mac
        self.uuid = uuid
        self.size = size

    def make(self, data: bytes) -> str:
        mac = self.mac(data)
        return str(uuid.UUID(bytes=mac[:16])) if self.uuid else mac.hex()[: self.size]

    def __call__(self, value: Any) -> Any:
        return None if value is None else self.make(as_text(value).encode())

    def copy_field(self, field: bytes) -> bytes:
        return NULL if field == NULL else self.make(raw_value(field)).encode()

    def field_function(self) -> FieldFunction:
        make = self.make
        return lambda data: data if data == NULL else make(raw_value(data)).encode()


@cache
def _permutation(salt: bytes, namespace: str, bits: int) -> _Permutation:
    """Return the keyed bijection of ``[0, 2**bits)`` for a salt and namespace.

    Shared by every column hashed with the same salt and namespace (one cache for a key
    and its references).
    """
    return _Permutation(salt, namespace, bits)


class _Permutation:
    """A keyed bijection of ``[0, 2**bits)``: an unbalanced Feistel network.

    The halves have ``bits // 2`` and ``bits - bits // 2`` bits and trade places every
    round, so four rounds map the range onto itself exactly. Round ``r`` mixes into the
    left half the first 8 bytes of AES-256 of the block ``r, 0 x 7, right (8 bytes,
    big-endian)``. :meth:`many` runs the rounds for an array at once. Results are kept
    (emptied when full), since keys repeat: numbers in :attr:`cache`, COPY fields in
    :attr:`fields`.
    """

    ROUNDS = 4

    def __init__(self, salt: bytes, namespace: str, bits: int) -> None:
        self.prf = BlockPRF(hmac.digest(salt, b"permute\0" + namespace.encode(), "sha256"))
        self.bits = bits
        self.low = bits // 2
        self.high = bits - self.low
        self.cache: dict[int, int] = {}
        self.fields: dict[bytes, bytes] = {NULL: NULL}

    def clear(self) -> None:
        """Forget the results kept."""
        self.cache.clear()
        self.fields.clear()
        self.fields[NULL] = NULL

    def __call__(self, number: int) -> int:
        result = self.cache.get(number)
        if result is not None:
            return result
        if number >= 1 << self.bits:
            raise UserError(f"{number} is out of range for a {self.bits + 1}-bit integer hash.")
        left, right = number >> self.low, number & ((1 << self.low) - 1)
        left_bits, right_bits = self.high, self.low
        for index in range(self.ROUNDS):
            block = self.prf.block(bytes([index]) + bytes(7) + right.to_bytes(8, "big"))
            mixed = left ^ (int.from_bytes(block[:8], "big") & ((1 << left_bits) - 1))
            left, right = right, mixed
            left_bits, right_bits = right_bits, left_bits
        result = (left << right_bits) | right
        if len(self.cache) >= _CACHE:
            self.cache.clear()
        self.cache[number] = result
        return result

    def many(self, numbers: Any) -> Any:
        """Return the permutation of each of ``numbers`` (uint64, each in range), in order."""
        left, right = numbers >> self.low, numbers & ((1 << self.low) - 1)
        left_bits, right_bits = self.high, self.low
        blocks = np.zeros((len(numbers), 16), dtype=np.uint8)
        for index in range(self.ROUNDS):
            blocks[:, 0] = index
            blocks[:, 8:] = right.astype(">u8").view(np.uint8).reshape(-1, 8)
            mixed = self.prf.blocks(blocks)[:, :8].copy().view(">u8").ravel()
            left, right = right, left ^ (mixed.astype(np.uint64) & ((1 << left_bits) - 1))
            left_bits, right_bits = right_bits, left_bits
        return (left << right_bits) | right
