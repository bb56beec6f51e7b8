"""Typed errors of the encrypted filesystem.

Every failure to read an encrypted file is an :class:`EncryptedFileError`
subclass, raised before any unauthenticated plaintext is returned.  Messages
name the file and what failed, never key material or plaintext.
"""
from __future__ import annotations

__all__ = [
    "ChunkAuthenticationError",
    "DataKeyError",
    "EncryptedFileError",
    "EncryptionContextMismatchError",
    "HeaderAuthenticationError",
    "HeaderError",
    "KeyCommitmentError",
    "LayoutError",
    "NotEncryptedError",
    "TrailingDataError",
    "TruncatedFileError",
    "UnsupportedFormatError",
]


class EncryptedFileError(ValueError):
    """Base class: the object is not a valid encrypted file for this reader."""

    def __init__(self, message: str, path: str | None = None):
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class NotEncryptedError(EncryptedFileError):
    """The object does not start with the encrypted-file magic (plaintext in the store).

    Open the filesystem with ``allow_plaintext=True`` to read such objects as-is
    (for migrations), or encrypt them with ``kms fs encrypt``.
    """


class UnsupportedFormatError(EncryptedFileError):
    """Known magic, but a version, suite or chunk size this reader does not support."""


class HeaderError(EncryptedFileError):
    """The header is malformed (bad lengths, non-zero padding, cut short)."""


class HeaderAuthenticationError(HeaderError):
    """The header tag does not match: the header (e.g. its context) was altered or spliced."""


class KeyCommitmentError(EncryptedFileError):
    """The data key does not match the header's key commitment."""


class EncryptionContextMismatchError(EncryptedFileError):
    """The file's encryption context lacks a pair this filesystem requires (or the bound path differs)."""


class DataKeyError(EncryptedFileError):
    """KMS refused to unwrap (or generate) the data key; ``code`` is the AWS error code."""

    def __init__(self, message: str, path: str | None = None, code: str | None = None):
        self.code = code
        super().__init__(f"{message} ({code})" if code else message, path)


class LayoutError(EncryptedFileError):
    """The object's length does not fit the layout its header declares."""


class ChunkAuthenticationError(EncryptedFileError):
    """A chunk failed authentication: modified, reordered, duplicated, or from another file."""


class TruncatedFileError(ChunkAuthenticationError):
    """The object ends without its final chunk (cut short, possibly at a chunk boundary)."""


class TrailingDataError(ChunkAuthenticationError):
    """A final chunk is followed by more data (the object was extended or chunks appended)."""
