"""The KMS web console, served by ``kms serve`` under ``/console/`` (docs/console.md).

Optional: it needs Starlette, Jinja2 and python-multipart (``pip install 'kms-local[server]'``).
"""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("kms.console")

__all__ = ["mount"]


def mount(server: Any) -> Any:
    """The console ASGI app for a started ``KMSApp`` (its engine and settings), or None
    when the web stack is not installed."""
    try:
        from .web import create_console  # noqa: PLC0415 - optional dependency (starlette, jinja2)
    except ImportError as e:
        log.warning("the web console is off: %s (pip install 'kms-local[server]')", e)
        return None
    return create_console(server.engine, dev_credentials=server.config.dev_credentials)
