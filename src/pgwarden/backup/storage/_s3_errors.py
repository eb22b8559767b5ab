"""Turn botocore's exceptions into pgwarden errors that name no secret."""

from __future__ import annotations

from collections.abc import Iterable

from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    ConnectionError,
    CredentialRetrievalError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)

from pgwarden.backup.errors import StorageError, StorageUnusable
from pgwarden.errors import PgwardenError
from pgwarden.urls import REDACTED, redact_text

__all__ = ["error_code", "is_transient", "scrub", "translate"]

_CREDENTIALS_HINT = (
    "Check the AWS credentials pgwarden finds: AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), else AWS_PROFILE and "
    "~/.aws/credentials, else the instance or task role."
)
_REFUSED = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AuthorizationHeaderMalformed",
    "InvalidClientTokenId",
}
_DENIED = {"AccessDenied", "AllAccessDisabled", "AccountProblem", "403"}
_TRANSIENT = {
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "InternalError",
    "ServiceUnavailable",
    "BadDigest",  # the part was damaged in transit; sending it again fixes it
}


def error_code(exc: BaseException) -> str:
    """Return the S3 error code of a ``ClientError`` (``NoSuchKey``, ``404``), else ''."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_transient(exc: BaseException) -> bool:
    """Return whether ``exc`` is worth retrying: a network error, 5xx, throttling."""
    if isinstance(exc, ConnectionError | HTTPClientError | IncompleteReadError):
        return True
    if isinstance(exc, ClientError):
        return error_code(exc) in _TRANSIENT or _status(exc) >= 500
    return False


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Return ``text`` with passwords in URLs and every one of ``secrets`` replaced."""
    text = redact_text(text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def translate(
    exc: BaseException,
    *,
    action: str,
    where: str,
    endpoint: str,
    secrets: Iterable[str] = (),
) -> PgwardenError:
    """Return the pgwarden error that explains ``exc``, raised while ``action`` ``where``.

    ``where`` is an ``s3://`` location, ``endpoint`` the server's URL, ``secrets`` the
    credentials in use: none of them is ever quoted.
    """
    secrets = tuple(secrets)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return StorageUnusable(
            f"cannot {action} {where}: no usable AWS credentials were found.",
            hint=_CREDENTIALS_HINT,
        )
    if isinstance(exc, ProfileNotFound):
        return StorageUnusable(
            f"cannot {action} {where}: {scrub(str(exc), secrets)}.",
            hint="Name a profile of ~/.aws/config, or unset AWS_PROFILE.",
        )
    if isinstance(exc, ConnectionError | HTTPClientError):
        return StorageUnusable(
            f"cannot {action} {where}: the S3 endpoint {endpoint} cannot be reached "
            f"({type(exc).__name__}).",
            hint="Check the endpoint URL and the region of the storage, and that the "
            "network lets this host reach it.",
        )
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = scrub(str(exc.response.get("Error", {}).get("Message", "")), secrets)
        bucket = where.removeprefix("s3://").partition("/")[0]
        if code == "NoSuchBucket":
            return StorageUnusable(
                f"cannot {action} {where}: bucket {bucket!r} does not exist at {endpoint}.",
                hint="Create the bucket, or fix its name in the storage URL.",
            )
        if code in _REFUSED:
            return StorageUnusable(
                f"cannot {action} {where}: the S3 endpoint {endpoint} refused the "
                f"credentials ({code}).",
                hint=_CREDENTIALS_HINT,
            )
        if code in _DENIED:
            return StorageUnusable(
                f"cannot {action} {where}: access denied ({code}).",
                hint="Give the credentials in use s3:ListBucket on the bucket and "
                "s3:GetObject, s3:PutObject, s3:DeleteObject and s3:AbortMultipartUpload "
                f"on its objects; or check them. {_CREDENTIALS_HINT}",
            )
        detail = f"{code}: {message}" if message else code or f"HTTP {_status(exc)}"
        return StorageError(f"cannot {action} {where}: {detail}.")
    if isinstance(exc, BotoCoreError):
        return StorageError(f"cannot {action} {where}: {scrub(str(exc), secrets)}.")
    return StorageError(f"cannot {action} {where}: {scrub(repr(exc), secrets)}.")
