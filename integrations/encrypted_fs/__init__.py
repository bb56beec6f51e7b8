"""fsspec ``encrypted`` filesystem: one URL prefix turns on envelope encryption.

    import pandas as pd
    df.to_parquet("encrypted::s3://bucket/data.parquet", storage_options={...})

See docs/encrypted-file-format.md for the file format.  Importing this package
loads fsspec and cryptography only; KMS clients and s3fs are imported when used.
"""
from __future__ import annotations

from .core import PATH_CONTEXT_KEY, EncryptedFileSystem, register
from .errors import (
    ChunkAuthenticationError,
    DataKeyError,
    EncryptedFileError,
    EncryptionContextMismatchError,
    HeaderAuthenticationError,
    HeaderError,
    KeyCommitmentError,
    LayoutError,
    NotEncryptedError,
    TrailingDataError,
    TruncatedFileError,
    UnsupportedFormatError,
)

__all__ = [
    "PATH_CONTEXT_KEY",
    "ChunkAuthenticationError",
    "DataKeyError",
    "EncryptedFileError",
    "EncryptedFileSystem",
    "EncryptionContextMismatchError",
    "HeaderAuthenticationError",
    "HeaderError",
    "KeyCommitmentError",
    "LayoutError",
    "NotEncryptedError",
    "TrailingDataError",
    "TruncatedFileError",
    "UnsupportedFormatError",
    "register",
]

# The fsspec.specs entry point registers the protocol when the project is
# installed; this covers running from a source tree without installing.
from fsspec.registry import known_implementations as _known
from fsspec.registry import register_implementation as _reg

if "encrypted" not in _known:
    _reg("encrypted", "integrations.encrypted_fs.EncryptedFileSystem")
del _known, _reg
