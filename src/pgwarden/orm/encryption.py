"""Encrypt values in the application with AES-256-GCM, under keys that can be rotated.

A :class:`Keyring` holds keys by id; the first (the primary) encrypts, every key can
decrypt. Each value is stored as a self-describing token: a version byte, the length of
the key id and the key id, a 12-byte random nonce, then the ciphertext and its 16-byte
tag. The header is authenticated with the data, so changing any byte of the token makes
it fail to decrypt rather than decrypt to something else.

The version says what else was authenticated: 1, nothing (tokens written before
encrypted columns were bound to their rows); 2, associated data given by the caller,
which :mod:`pgwarden.orm.encrypted_columns` makes the table, column and primary key of
the row the value belongs to. The version being authenticated too, a bound token cannot
be passed off as an unbound one.
"""

from __future__ import annotations

import base64
import functools
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pgwarden._encryption_keys import FORM_HINT as _FORM_HINT
from pgwarden._encryption_keys import KEY_BYTES, SETTING, parse_key_setting
from pgwarden._encryption_keys import KEY_ID as _KEY_ID
from pgwarden._encryption_keys import check_key_id as _check_key_id
from pgwarden.config import load_settings
from pgwarden.errors import ConfigError, DecryptionFailed, UnknownKey

__all__ = ["UNBOUND", "WITH_ASSOCIATED_DATA", "Keyring", "header", "keyring_from_settings"]

UNBOUND = 1
WITH_ASSOCIATED_DATA = 2
NONCE_BYTES = 12
TAG_BYTES = 16


def header(key_id: str, version: int) -> bytes:
    """Return the header a token under ``key_id`` of ``version`` starts with."""
    encoded = key_id.encode("ascii")
    return bytes((version, len(encoded))) + encoded


class Keyring:
    """Hold AES-256-GCM keys by id; encrypt with the primary, decrypt with any."""

    __slots__ = ("_ciphers", "_primary")

    def __init__(self, keys: Mapping[str, bytes], primary: str) -> None:
        if not keys:
            raise ConfigError("an encryption keyring needs at least one key.", hint=_FORM_HINT)
        ciphers: dict[str, AESGCM] = {}
        for key_id, key in keys.items():
            _check_key_id(key_id)
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise ConfigError(
                    f"encryption key {key_id!r} is not {KEY_BYTES} bytes long.",
                    hint=_FORM_HINT,
                )
            ciphers[key_id] = AESGCM(key)
        if primary not in ciphers:
            raise ConfigError(
                f"the primary key id {primary!r} is not in the keyring.",
                hint="Name one of the keyring's ids as primary.",
            )
        self._ciphers = ciphers
        self._primary = primary

    @classmethod
    def from_setting(cls, text: str) -> Keyring:
        """Parse ``"k2:BASE64KEY,k1:BASE64KEY"``; the first key is the primary.

        A malformed value raises :class:`ConfigError` that names the entry by position
        (and key id, once that is known to be one) but never quotes key material.
        """
        keys = parse_key_setting(text)
        return cls(keys, primary=next(iter(keys)))

    @staticmethod
    def generate_key() -> str:
        """Return a new random 256-bit key, base64-encoded for the setting."""
        return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")

    @property
    def primary(self) -> str:
        """Return the id of the key that encrypts."""
        return self._primary

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Return the ids of every key held, the primary first."""
        return (self._primary, *(key_id for key_id in self._ciphers if key_id != self._primary))

    def __repr__(self) -> str:
        return f"Keyring(key_ids={self.key_ids!r}, primary={self._primary!r})"

    def encrypt(self, plaintext: bytes, *, aad: bytes = b"") -> bytes:
        """Encrypt ``plaintext`` under the primary key and return the token.

        ``aad`` is authenticated but not stored: the same bytes must be given to
        :meth:`decrypt` (a table and column name, say, to stop a token being copied
        into another column). A token with associated data is of version 2, one
        without of version 1.
        """
        start = header(self._primary, WITH_ASSOCIATED_DATA if aad else UNBOUND)
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._primary].encrypt(nonce, plaintext, start + aad)
        return start + nonce + sealed

    def decrypt(self, token: bytes, *, aad: bytes = b"") -> bytes:
        """Return the plaintext of ``token``.

        Raise :class:`DecryptionFailed` if the token was changed or cut short, or the
        ``aad`` differs; :class:`UnknownKey` if its key id is not in this keyring.
        """
        key_id, header_length = _read_header(token)
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownKey(
                f"the value was encrypted with key id {key_id!r}, which the keyring "
                f"(ids {', '.join(self.key_ids)}) does not hold.",
                hint=f"Add key {key_id!r} to {SETTING}, after the primary key.",
            )
        nonce = token[header_length : header_length + NONCE_BYTES]
        try:
            return cipher.decrypt(
                nonce, token[header_length + NONCE_BYTES :], token[:header_length] + aad
            )
        except InvalidTag:
            raise DecryptionFailed(
                f"a value encrypted with key id {key_id!r} does not authenticate: it was "
                "changed or cut short, or encrypted with other associated data or another "
                "key of that id.",
                hint="Restore the value from a backup, and check that the key with that id "
                "is the one that encrypted it.",
            ) from None

    def key_id(self, token: bytes) -> str:
        """Return the id of the key ``token`` was encrypted with, without decrypting it."""
        return _read_header(token)[0]

    @staticmethod
    def version(token: bytes) -> int:
        """Return the version of ``token``: 1 without associated data, 2 with it."""
        _read_header(token)
        return token[0]


def _read_header(token: bytes) -> tuple[str, int]:
    """Return the key id of ``token`` and the length of its header."""
    if len(token) < 2:
        raise _truncated()
    if token[0] not in (UNBOUND, WITH_ASSOCIATED_DATA):
        raise DecryptionFailed(
            f"the value is not an encrypted token of a known version (byte {token[0]}).",
            hint="Check that the column holds values written by EncryptedString.",
        )
    end = 2 + token[1]
    if len(token) < end + NONCE_BYTES + TAG_BYTES:
        raise _truncated()
    try:
        key_id = token[2:end].decode("ascii")
    except UnicodeDecodeError:
        key_id = ""
    if not _KEY_ID.match(key_id):
        raise DecryptionFailed(
            "the key id in the encrypted value is malformed; the value was changed.",
            hint="Restore the value from a backup.",
        )
    return key_id, end


def _truncated() -> DecryptionFailed:
    return DecryptionFailed(
        "the encrypted value is too short to be a token; it was cut short or changed.",
        hint="Check that the column is bytea, long enough, and written by EncryptedString.",
    )


@functools.cache
def keyring_from_settings() -> Keyring:
    """Return the keyring of ``PGWARDEN_ENCRYPTION_KEYS``, read once and then cached.

    Call ``keyring_from_settings.cache_clear()`` to read the setting again.
    """
    text = load_settings().encryption_keys
    if not text:
        raise ConfigError(
            f"{SETTING} is not set; there is no key to encrypt with.", hint=_FORM_HINT
        )
    return Keyring.from_setting(text)
