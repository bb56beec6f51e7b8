"""Data keys from KMS: GenerateDataKey on write, Decrypt on read, both cached.

Any boto3-shaped KMS client works (``kms_core.client()``, a boto3 client on
our server, real AWS KMS).  Key bytes live only in memory and never in reprs.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from kms_core.envelope import CachedKey, DataKeyCache, encode_context

from .errors import DataKeyError

# Storage kinds whose writes are whole-object PUTs get S3's managed key; files
# on local or network filesystems get EFS's.
OBJECT_STORE_PROTOCOLS = frozenset({
    "s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl", "oss", "oci", "r2", "b2",
    "memory", "http", "https", "hf", "webdav", "dbfs", "wasb",
})
S3_MANAGED_KEY = "alias/aws/s3"
EFS_MANAGED_KEY = "alias/aws/elasticfilesystem"


def managed_key_for(protocol: str | tuple) -> str:
    protos = (protocol,) if isinstance(protocol, str) else tuple(protocol)
    return S3_MANAGED_KEY if any(p in OBJECT_STORE_PROTOCOLS for p in protos) else EFS_MANAGED_KEY


def _error_code(exc: BaseException) -> str | None:
    resp = getattr(exc, "response", None)
    if isinstance(resp, dict):
        return resp.get("Error", {}).get("Code")
    return getattr(exc, "code", None) or type(exc).__name__


class KeyProvider:
    """Wraps one KMS client with the write-side and read-side data-key caches."""

    def __init__(self, client_factory: Callable[[], Any], *, cache: bool = True,
                 max_age: float = 300.0, max_files: int = 10_000, max_bytes: int = 2**36,
                 max_entries: int = 1000):
        self._factory = client_factory
        self._client = None
        self._lock = threading.Lock()
        self.cache_enabled = cache
        self.write_cache = DataKeyCache(max_age=max_age, max_uses=max_files,
                                        max_bytes=max_bytes, max_entries=max_entries)
        self.read_cache = DataKeyCache(max_age=max_age, max_entries=max_entries)
        # Verified per-file keys, so reopening a file skips HKDF and the header MAC.
        self.file_cache = DataKeyCache(max_age=max_age, max_entries=max_entries)

    def __repr__(self) -> str:
        return f"<KeyProvider cache={self.cache_enabled} cached_keys={len(self.write_cache)}>"

    @property
    def client(self):
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._factory()
        return self._client

    def data_key(self, key_id: str, context: Mapping[str, str], path: str | None = None,
                 nbytes: int = 0) -> CachedKey:
        """A data key for a new file (cached per key id and context)."""
        def make() -> CachedKey:
            try:
                resp = self.client.generate_data_key(
                    KeyId=key_id, KeySpec="AES_256", EncryptionContext=dict(context))
            except Exception as exc:  # botocore ClientError or connection error
                raise DataKeyError(f"KMS GenerateDataKey with {key_id} failed", path,
                                   _error_code(exc)) from None
            return CachedKey(resp["Plaintext"], resp["CiphertextBlob"], resp["KeyId"])
        if not self.cache_enabled:
            entry = make()
            entry.uses += 1
            return entry
        return self.write_cache.get_or_create((key_id, encode_context(context)), make, nbytes)

    def unwrap(self, key_id: str, wrapped: bytes, context: Mapping[str, str],
               path: str | None = None) -> bytes:
        """Plaintext data key of a file header (cached per wrapped key and context)."""
        ck = (wrapped, encode_context(context))
        if self.cache_enabled:
            hit = self.read_cache.get(ck)
            if hit is not None:
                return hit.plaintext
        kwargs = {"CiphertextBlob": wrapped, "EncryptionContext": dict(context)}
        if key_id:
            kwargs["KeyId"] = key_id
        try:
            resp = self.client.decrypt(**kwargs)
        except Exception as exc:
            raise DataKeyError("KMS Decrypt of the file's data key failed", path,
                               _error_code(exc)) from None
        plaintext = resp["Plaintext"]
        if self.cache_enabled:
            self.read_cache.put(ck, CachedKey(plaintext, wrapped, resp.get("KeyId", key_id)))
        return plaintext

    def file_keys(self, header, path: str | None = None):
        """Unwrap the header's data key and verify commitment and header tag (cached)."""
        ck = (header.wrapped_key, header.signed_bytes, header.tag)
        if self.cache_enabled:
            hit = self.file_cache.get(ck)
            if hit is not None:
                return hit.extra
        data_key = self.unwrap(header.key_id, header.wrapped_key, header.context, path)
        keys = header.verify(data_key, path)
        if self.cache_enabled:
            self.file_cache.put(ck, CachedKey(b"", header.wrapped_key, header.key_id, extra=keys))
        return keys

    def rewrap(self, key_id: str, wrapped: bytes, context: Mapping[str, str],
               destination_key_id: str, path: str | None = None) -> tuple[str, bytes]:
        """ReEncrypt a wrapped data key under ``destination_key_id`` (the key never leaves KMS)."""
        kwargs = {"CiphertextBlob": wrapped, "SourceEncryptionContext": dict(context),
                  "DestinationKeyId": destination_key_id,
                  "DestinationEncryptionContext": dict(context)}
        if key_id:
            kwargs["SourceKeyId"] = key_id
        try:
            resp = self.client.re_encrypt(**kwargs)
        except Exception as exc:
            raise DataKeyError(f"KMS ReEncrypt to {destination_key_id} failed", path,
                               _error_code(exc)) from None
        return resp["KeyId"], resp["CiphertextBlob"]

    def clear(self) -> None:
        self.write_cache.clear()
        self.read_cache.clear()
        self.file_cache.clear()
