"""Typed errors with AWS KMS error codes.

The engine raises :class:`KMSError`; the in-process client turns it into a
botocore ``ClientError`` subclass (``client.exceptions.<Code>``), the server
into ``{"__type": Code, "message": ...}``, the CLI into AWS CLI's one-line
message.  Messages never contain plaintext, data keys or secrets.
"""
from __future__ import annotations

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


class StoreError(Exception):
    """The key store cannot be opened or used (wrong root key, bad schema)."""
