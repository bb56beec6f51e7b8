"""kms-local: an AWS-KMS-compatible engine.

``kms_core.client()`` is the public entry point (a drop-in for
``boto3.client("kms")``).  Imports are lazy so that ``import kms_core`` stays
cheap.
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["KMSError", "__version__", "client"]


def client(*args, **kwargs):
    """``kms_core.client("kms", region_name=..., ...)``: called as ``boto3.client`` is
    (see ``kms_core.embedded.client``)."""
    from .embedded import client as _client  # noqa: PLC0415 - cold start: import kms_core stays cheap
    return _client(*args, **kwargs)


def __getattr__(name):
    if name == "KMSError":
        from .errors import KMSError  # noqa: PLC0415 - cold start: import kms_core stays cheap
        return KMSError
    raise AttributeError(name)
