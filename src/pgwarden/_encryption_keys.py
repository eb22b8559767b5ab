"""Parse ``PGWARDEN_ENCRYPTION_KEYS``: key-id:base64 pairs, the first used to encrypt.

Shared by the encrypted columns (:mod:`pgwarden.orm.encryption`) and encrypted backups
(:mod:`pgwarden.backup.crypto`); light to import, so a backup command or a WAL archive
command does not load the ORM to read its keys.
"""

from __future__ import annotations

import base64
import binascii
import re

from pgwarden.errors import ConfigError

__all__ = [
    "FORM_HINT",
    "KEY_BYTES",
    "KEY_ID",
    "SETTING",
    "check_key_id",
    "parse_key_setting",
    "setting_error",
]

KEY_BYTES = 32
SETTING = "PGWARDEN_ENCRYPTION_KEYS"
KEY_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
FORM_HINT = (
    f"{SETTING} must be key-id:base64 pairs separated by commas, the first used to "
    "encrypt (k2:<new key>,k1:<old key>); key ids are 1-64 letters, digits, '_', '.' or "
    "'-', keys are 32 random bytes in base64. Make a key with: python -c "
    '"from pgwarden.orm import Keyring; print(Keyring.generate_key())"'
)


def check_key_id(key_id: str) -> None:
    """Raise :class:`ConfigError` unless ``key_id`` is 1-64 letters, digits, '_', '.', '-'."""
    if not isinstance(key_id, str) or not KEY_ID.match(key_id):
        raise ConfigError(
            "an encryption key id must be 1-64 letters, digits, '_', '.' or '-'.",
            hint=FORM_HINT,
        )


def parse_key_setting(text: str) -> dict[str, bytes]:
    """Parse ``"k2:BASE64KEY,k1:BASE64KEY"`` into keys by id, in the order given.

    A malformed value raises :class:`ConfigError` that names the entry by position (and
    key id, once that is known to be one) but never quotes key material.
    """
    keys: dict[str, bytes] = {}
    for position, entry in enumerate(text.split(","), start=1):
        key_id, colon, encoded = (part.strip() for part in entry.partition(":"))
        if not colon or not key_id or not encoded:
            raise setting_error(f"entry {position} is not of the form key-id:base64-key")
        if not KEY_ID.match(key_id):
            raise setting_error(f"entry {position} has an unusable key id")
        if key_id in keys:
            raise setting_error(f"key id {key_id!r} appears more than once")
        try:
            key = base64.b64decode(encoded.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raise setting_error(f"the key of {key_id!r} is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise setting_error(f"the key of {key_id!r} is {len(key)} bytes long, not {KEY_BYTES}")
        keys[key_id] = key
    return keys


def setting_error(problem: str) -> ConfigError:
    """Return the error of a malformed ``PGWARDEN_ENCRYPTION_KEYS``."""
    return ConfigError(f"invalid setting {SETTING}: {problem}.", hint=FORM_HINT)
