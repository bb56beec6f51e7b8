"""Key types by ``KeySpec``: ``get(spec)`` gives the :class:`~kms_core.keytypes.base.KeyType`.

Implementations live one family per module (``symmetric``, ``rsa``, ``ecc``, ``hmac``, …) and
register themselves here; handlers only ever call ``get``.
"""
from __future__ import annotations

from kms_core.errors import KMSError

from .base import Encrypter, KeyAgreement, KeyType, Mac, Material, Signer

_REGISTRY: dict[str, KeyType] = {}


def register(kt: KeyType) -> KeyType:
    _REGISTRY[kt.key_spec] = kt
    return kt


def get(spec: str) -> KeyType:
    try:
        return _REGISTRY[spec]
    except KeyError:
        raise KMSError("UnsupportedOperationException", f"{spec} is not supported.") from None


def specs() -> tuple[str, ...]:
    return tuple(_REGISTRY)


# The built-in families register here, after the registry they register into:
# SYMMETRIC_DEFAULT by instance, the other families on import.
from .symmetric import SymmetricDefault  # noqa: E402

register(SymmetricDefault())

from . import ecc, ed25519, hmac, mldsa, rsa  # noqa: E402, F401

__all__ = ["Encrypter", "KeyAgreement", "KeyType", "Mac", "Material", "Signer", "get", "register", "specs"]
