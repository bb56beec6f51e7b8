"""Testing with kms-local (docs/testing.md).

* :func:`mock_kms` — like moto's ``mock_aws``, for KMS only: every KMS client
  the code under test creates (boto3, botocore, aiobotocore) talks to a fresh
  in-memory engine.
* :class:`FakeClock` — a clock the test moves, to drive rotation and deletion.
* The pytest plugin (``kms_core.testing.plugin``, registered as an entry
  point): fixtures ``kms_mock``, ``kms_client``, ``kms_clock``, ``kms_engine``,
  ``kms_server``; the ``kms_mock`` marker and the ``--kms-mock`` option.

Importing this package is cheap (it is also the pytest plugin's parent):
botocore and the engine are loaded when a name is first used.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kms_core.clock import FakeClock, SystemClock, WallClock

if TYPE_CHECKING:
    from .mock import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, MockKMS, bypass, mock_kms, patch_client

__all__ = ["DEFAULT_ACCOUNT_ID", "DEFAULT_REGION", "FakeClock", "MockKMS", "SystemClock", "WallClock",
           "bypass", "mock_kms", "patch_client"]

_FROM_MOCK = {"DEFAULT_ACCOUNT_ID", "DEFAULT_REGION", "MockKMS", "bypass", "mock_kms", "patch_client"}


def __getattr__(name: str) -> Any:
    if name in _FROM_MOCK:
        from . import mock  # noqa: PLC0415 - botocore and the engine load on first use

        return getattr(mock, name)
    raise AttributeError(f"module 'kms_core.testing' has no attribute {name!r}")
