"""SQLAlchemy encrypted column types backed by KMS envelope encryption.

    from integrations.encrypted_columns import EncryptedType
    ssn: Mapped[str] = mapped_column(EncryptedType(String(11)))

Importing this package does no I/O and makes no KMS call.  See
docs/encrypted-column-format.md for the stored format.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from .errors import (
    DecryptionError,
    EncryptedColumnError,
    KeyTableMissingError,
    SignatureError,
    UnknownDataKeyError,
    UnsupportedComparisonError,
    UnsupportedValueError,
)
from .keys import KEY_TABLE, KEYRING, install_listeners, key_table
from .rows import SealedValue, bind_row
from .types import DO_NOTHING, ENCRYPT_AND_SIGN, SIGN_ONLY, EncryptedJSON, EncryptedType

__all__ = [
    "DO_NOTHING",
    "ENCRYPT_AND_SIGN",
    "KEY_TABLE",
    "SIGN_ONLY",
    "DecryptionError",
    "EncryptedColumnError",
    "EncryptedJSON",
    "EncryptedType",
    "KeyTableMissingError",
    "SealedValue",
    "SignatureError",
    "UnknownDataKeyError",
    "UnsupportedComparisonError",
    "UnsupportedValueError",
    "bind_row",
    "configure",
    "key_table",
    "render_item",
    "warm_up",
    "warm_up_async",
]


def configure(kms: Any = ..., **bounds) -> None:
    """Set the KMS client (any boto3 KMS client; default ``kms_core.client()``)
    (``None``: back to the default) and cache bounds: ``write_max_age``, ``write_max_uses``, ``read_max_age``,
    ``max_entries``.  Clears the data-key caches."""
    KEYRING.configure(kms, **bounds)


def _encrypted_columns(metadata) -> list:
    if metadata is None:
        return []
    return [c for t in metadata.tables.values() for c in t.columns
            if isinstance(c.type, (EncryptedType, EncryptedJSON))]


def warm_up(bind, metadata=None, *, load_existing: bool = True) -> int:
    """Make every key the columns of ``metadata`` need ready before traffic:
    creates the key table if missing, unwraps stored data keys, and makes the
    write keys.  ``bind``: an Engine or Connection.  Returns KMS calls made."""
    install_listeners()
    cols = _encrypted_columns(metadata)
    if isinstance(bind, Connection):
        return KEYRING.warm_up_sync(bind, cols, load_existing)
    with bind.begin() as conn:
        return KEYRING.warm_up_sync(conn, cols, load_existing)


async def warm_up_async(async_engine, metadata=None, *, load_existing: bool = True) -> int:
    """``warm_up`` for an AsyncEngine: the KMS calls run in a worker thread,
    the database I/O on the async driver, so the event loop never blocks on KMS."""
    install_listeners()
    cols = _encrypted_columns(metadata)
    async with async_engine.begin() as conn:
        return await conn.run_sync(
            lambda sync_conn: KEYRING.warm_up_sync(sync_conn, cols, load_existing))


def render_item(type_: str, obj: Any, autogen_context) -> Any:
    """Alembic ``render_item`` hook: renders the encrypted types importably.

    In env.py: ``context.configure(..., render_item=render_item)``.
    """
    if type_ == "type" and isinstance(obj, (EncryptedType, EncryptedJSON)):
        autogen_context.imports.add("import integrations.encrypted_columns")
        return f"integrations.encrypted_columns.{obj!r}"
    return False
