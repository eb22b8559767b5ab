"""The one exception tree of pgwarden.

Every expected failure is a :class:`PgwardenError` with a ``hint`` that tells the user
what to do next. The edges turn it into something else: the CLI into a two-line message
and an exit code, the HTTP API into one JSON error shape. Nothing else catches it.
"""

from __future__ import annotations

from typing import Any


class PgwardenError(Exception):
    """Base of every error pgwarden raises on purpose.

    ``exit_code`` is what the CLI exits with: 2 for a mistake in what the user asked
    (a bad URL, a missing binary, an unusable directory), 1 for a failure of the work.
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Whole across processes (the export's transform workers): hint and fields too,
        # whatever the subclass's __init__ takes.
        return _restore, (type(self), self.args, self.__dict__)


def _restore(cls: type[PgwardenError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    error = cls.__new__(cls, *args)
    error.__dict__.update(state)
    return error


class UserError(PgwardenError):
    """Raise when what the user asked for cannot be done as asked."""

    exit_code = 2


class ConfigError(UserError):
    """Raise when a setting, from any source, has a value of the wrong form."""


class ConnectionFailed(UserError):
    """Raise when a database cannot be reached or refuses the credentials."""


class BinaryNotFound(UserError):
    """Raise when a PostgreSQL client or server program cannot be found."""


class NotEnabled(UserError):
    """Raise when a feature needs an extension or a privilege the server lacks."""


class ServerError(PgwardenError):
    """Raise when the embedded PostgreSQL server cannot be started, stopped or read."""


class ServerUnusable(UserError):
    """Raise when the embedded server's directory or port cannot be used as given."""


class DecryptionFailed(PgwardenError):
    """Raise when a ciphertext cannot be decrypted: tampered, truncated, or the wrong key."""


class UnknownKey(UserError):
    """Raise when data names an encryption key id that the keyring does not hold."""
