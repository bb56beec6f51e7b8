"""Typed errors with AWS KMS error codes.

The engine raises :class:`KMSError`; the in-process client turns it into a
botocore ``ClientError`` subclass (``client.exceptions.<Code>``), the server
into ``{"__type": Code, "message": ...}``, the CLI into AWS CLI's one-line
message.  Messages never contain plaintext, data keys or secrets.
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger("kms")

# HTTP status per code.  AWS answers 400 for client errors (recorded
# snapshots); 5xx only for internal/dependency failures (botocore retries them).
_STATUS = {
    "KMSInternalException": 500,
    "DependencyTimeoutException": 503,
    "KeyUnavailableException": 500,
    "ServiceUnavailableException": 503,
    "ThrottlingException": 400,
    "AccessDeniedException": 400,
    "UnrecognizedClientException": 400,
    "InvalidSignatureException": 400,
    "MissingAuthenticationTokenException": 403,
    "IncompleteSignatureException": 400,
    "UnknownOperationException": 400,
    "SerializationException": 400,
    "RequestEntityTooLargeException": 413,
    "RequestTimeoutException": 408,
}


class KMSError(Exception):
    """An error with an AWS error code.  ``str(err)`` is the message."""

    def __init__(self, code: str, message: str = "", status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else _STATUS.get(code, 400)

    def __repr__(self) -> str:
        return f"KMSError({self.code!r}, {self.message!r})"

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code


def validation(message: str) -> KMSError:
    return KMSError("ValidationException", message)


def not_found(message: str) -> KMSError:
    return KMSError("NotFoundException", message)


def invalid_state(message: str) -> KMSError:
    return KMSError("KMSInvalidStateException", message)


def invalid_ciphertext() -> KMSError:
    # AWS sends an empty message for every ciphertext/context mismatch, which
    # also keeps us from leaking which check failed.
    return KMSError("InvalidCiphertextException", "")


def _where(e: BaseException) -> str:
    """``file:line`` of the innermost frame: enough to find a bug, no values."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "?"
    return f"{os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"


def internal_error(e: BaseException, operation: str | None, request_id: str | None) -> KMSError:
    """The dispatch boundary's answer to an unexpected exception (a bug).

    Logs its type and location — never its message, which may quote request
    data — with the traceback only at DEBUG, and returns what the caller gets:
    ``KMSInternalException`` (500, which botocore retries), as AWS answers.
    """
    log.error("internal error in %s (request %s): %s at %s", operation, request_id,
              type(e).__name__, _where(e), exc_info=log.isEnabledFor(logging.DEBUG))
    return KMSError("KMSInternalException", "An internal error occurred.")


class StoreError(Exception):
    """The key store cannot be opened or used (wrong root key, bad schema)."""
