"""A read-only Decrypt path for cold starts on the embedded SQLite store.

Why: importing SQLAlchemy (and botocore) costs ~500 ms, while a Lambda-style
cold start that only decrypts a few values needs ~20 ms of work.  This path
reads the store with the standard library's ``sqlite3`` in read-only mode and
answers only the plainest case — an Enabled key, no time-driven event due, no
principal to evaluate, a blob that opens.  Anything else returns ``None`` and
the caller goes through the full engine, which gives AWS's exact answer
(errors included).  It never writes.

It reads the tables and seals written by ``kms_core.store`` (same layouts and
associated data; tests/engine/test_light.py checks it against the engine, multi-Region keys'
per-Region rows included).
"""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

_SEAL_AAD_PREFIX = b"kms-local/seal/v1|"
_CANARY = b"kms-local root key check v1"
_CANARY_AAD = b"kms-local/root-check/v1"


class LightDecryptor:
    """Decrypt blobs from a SQLite store without SQLAlchemy.  Thread-safe."""

    def __init__(self, path: Path, root_key: bytes, account_id: str, region: str, ttl: float):
        self._path = path
        self._root_key = root_key
        self._account = account_id
        self._region = region
        self._ttl = ttl
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, int], tuple[float, object, str, str]] = {}
        self._checked_root = False

    @classmethod
    def for_settings(cls, settings) -> LightDecryptor | None:
        url = settings.store_url
        if not url.startswith("sqlite:///") or (settings.root_key is None and not (
                settings.root_key_file and Path(settings.root_key_file).exists())):
            return None
        path = Path(url[len("sqlite:///"):])
        if not path.exists():
            return None
        root = settings.root_key
        if root is None:
            from .settings import decode_root_key  # noqa: PLC0415 - cold start: the light path loads nothing it can avoid
            try:
                root = decode_root_key(Path(settings.root_key_file).read_text(), "root key file")
            except Exception:  # the full engine reports it properly
                return None
        return cls(path, root, settings.account_id, settings.region, settings.cache_ttl)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, timeout=5)

    def _aead(self, key):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415 - cold start: the light path loads nothing it can avoid
        return AESGCM(key)

    def _row_id(self, key_id: str) -> str:
        """The key's ``kms_keys`` row in this Region (``repository.row_id``): a multi-Region
        key has one row per Region, ``mrk-<hex>/<region>``; its material rows stay under the
        key id, shared by every Region."""
        if not key_id.startswith("mrk-"):
            return key_id
        rid = f"{key_id}/{self._region}"
        if len(rid) <= 64:
            return rid
        import hashlib  # noqa: PLC0415 - cold start: only Region names too long for a row id need it
        return f"{key_id}/{hashlib.sha256(self._region.encode()).hexdigest()[:27]}"

    def _material(self, key_id: str, version: int, now: float):
        """(aead, key ARN, material id) for an Enabled key with nothing due, else None."""
        hit = self._keys.get((key_id, version))
        mono = time.monotonic()
        if hit is not None and mono - hit[0] < self._ttl:
            return hit[1:]
        con = self._connect()
        try:
            if not self._checked_root:
                sealed = con.execute("SELECT root_check FROM kms_state WHERE id = 1").fetchone()[0]
                if self._aead(self._root_key).decrypt(sealed[1:13], sealed[13:], _CANARY_AAD) != _CANARY:
                    return None
                self._checked_root = True
            row = con.execute(
                "SELECT account_id, region, key_state, key_usage, deletion_date, rotation_enabled, "
                "next_rotation_date, valid_to FROM kms_keys WHERE key_id = ?",
                (self._row_id(key_id),)).fetchone()
            if row is None:
                return None
            account, region, state, usage, _deletion, rot, next_rot, valid_to = row
            if (account, region, state, usage) != (self._account, self._region, "Enabled", "ENCRYPT_DECRYPT"):
                return None
            if (rot and next_rot is not None and next_rot <= now) or (valid_to is not None and valid_to <= now):
                return None  # a rotation or expiry is due: the engine settles it first
            mat = con.execute("SELECT sealed, material_id FROM kms_key_materials WHERE key_id = ? AND version = ?",
                              (key_id, version)).fetchone()
        except (sqlite3.Error, TypeError, ValueError):
            return None
        except Exception:  # InvalidTag on the canary: wrong root key → full engine reports it
            return None
        finally:
            con.close()
        if mat is None:
            return None
        sealed, material_id = mat
        try:
            material = self._aead(self._root_key).decrypt(
                sealed[1:13], sealed[13:], _SEAL_AAD_PREFIX + f"material|{key_id}|{version}".encode())
        except Exception:
            return None
        arn = f"arn:aws:kms:{self._region}:{self._account}:key/{key_id}"
        aead = self._aead(material)
        with self._lock:
            self._keys[(key_id, version)] = (mono, aead, arn, material_id)
        return aead, arn, material_id

    def decrypt(self, params: dict) -> dict | None:
        """boto3-shaped Decrypt result, or None to use the full engine."""
        if set(params) - {"CiphertextBlob", "EncryptionContext"}:
            return None
        blob = params.get("CiphertextBlob")
        ec = params.get("EncryptionContext")
        if not isinstance(blob, (bytes, bytearray)):
            return None
        if ec is not None and (not isinstance(ec, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in ec.items())):
            return None
        from . import blob as blobfmt  # the format's own parser (cryptography only)  # noqa: PLC0415 - cold start: the light path loads nothing it can avoid
        from .errors import KMSError  # noqa: PLC0415 - cold start: the light path loads nothing it can avoid
        blob = bytes(blob)
        try:
            header = blobfmt.parse_header(blob)
        except KMSError:
            return None
        found = self._material(header.key_id, header.material_version, time.time())
        if found is None:
            return None
        aead, arn, material_id = found
        try:
            plaintext = blobfmt.open_(aead, header, blob, blobfmt.encode_context(ec))
        except KMSError:
            return None  # the engine answers InvalidCiphertextException
        return {"KeyId": arn, "Plaintext": plaintext, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                "KeyMaterialId": material_id}
