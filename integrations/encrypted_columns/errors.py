"""Typed errors of the encrypted column types.

Messages name tables, columns and key ids only: never values or key bytes.
"""
from __future__ import annotations


class EncryptedColumnError(Exception):
    """Base class.  ``code`` is an AWS KMS error code where one fits."""

    code = "EncryptedColumnError"

    def __init__(self, message: str = "", code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{self.code}: {msg}" if msg else self.code


class DecryptionError(EncryptedColumnError):
    """A stored value failed authentication: tampered, swapped between
    columns/tables/rows, truncated, or not produced by this library."""

    code = "InvalidCiphertextException"


class UnknownDataKeyError(DecryptionError):
    """A value names a data key that is not in the key table."""

    code = "NotFoundException"


class UnsupportedComparisonError(EncryptedColumnError, TypeError):
    """A SQL comparison the column's mode cannot answer correctly."""

    code = "UnsupportedOperationException"


class UnsupportedValueError(EncryptedColumnError, TypeError):
    """A Python value the column cannot store with full fidelity."""

    code = "ValidationException"


class KeyTableMissingError(EncryptedColumnError):
    code = "KMSInvalidStateException"


class SignatureError(DecryptionError):
    """An EncryptedJSON document's signature does not match its attributes."""
