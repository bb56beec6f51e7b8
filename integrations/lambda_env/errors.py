"""Typed errors of the encrypted-environment helper.

Every error names the variable (or the .env line) it is about and never
contains the value: neither the ciphertext nor, of course, the plaintext.
``code`` is the AWS KMS error code when KMS reported one.  Standard library
only, so that importing the helper stays cheap.
"""
from __future__ import annotations

__all__ = [
    "AccessDeniedError",
    "CredentialsError",
    "EnvFileError",
    "EnvFileFormatError",
    "EnvFileTamperedError",
    "KMSRequestError",
    "KMSUnavailableError",
    "KeyDeletedError",
    "KeyDisabledError",
    "KeyUnavailableError",
    "MissingSecretError",
    "NotCiphertextError",
    "SecretError",
    "TransformError",
    "WrongContextError",
    "WrongKeyError",
]


class SecretError(Exception):
    """Base class.  ``variable`` is the variable's name (or None), ``code`` the
    AWS error code behind it (or None)."""

    def __init__(self, message: str, *, variable: str | None = None, code: str | None = None):
        super().__init__(message)
        self.variable = variable
        self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class MissingSecretError(SecretError, LookupError):
    """The variable is not set (or is empty)."""


class NotCiphertextError(SecretError, ValueError):
    """The value is not base64 of a KMS ciphertext blob."""


class WrongContextError(SecretError):
    """KMS refused the ciphertext (InvalidCiphertextException) under every
    encryption context tried: it was encrypted under another context, or it is
    not a ciphertext of this KMS."""


class KeyUnavailableError(SecretError):
    """The KMS key cannot be used (disabled, pending deletion, deleted, unavailable)."""


class KeyDisabledError(KeyUnavailableError):
    """DisabledException."""


class KeyDeletedError(KeyUnavailableError):
    """The key is pending deletion (KMSInvalidStateException) or gone (NotFoundException)."""


class WrongKeyError(SecretError):
    """IncorrectKeyException: the value was not encrypted under the pinned key."""


class AccessDeniedError(SecretError, PermissionError):
    """AccessDeniedException (or a signature/credential rejection)."""


class KMSRequestError(SecretError):
    """Any other error KMS reported."""


class KMSUnavailableError(KMSRequestError, ConnectionError):
    """KMS could not be reached, or kept failing (5xx, throttling) after retries."""


class CredentialsError(SecretError):
    """No AWS credentials for a remote KMS endpoint."""


class TransformError(SecretError, ValueError):
    """The decrypted value is not valid for the requested transform (text, json)."""


class EnvFileError(SecretError):
    """An encrypted .env file cannot be used."""


class EnvFileFormatError(EnvFileError, ValueError):
    """The file is not an encrypted .env file of a version we read."""


class EnvFileTamperedError(EnvFileError):
    """The file's MAC does not match: a key, value or line was edited, removed,
    reordered or added (or the MAC key is not decryptable)."""
