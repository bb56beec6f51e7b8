"""A Powertools for AWS Lambda (Python) Parameters provider for encrypted
environment variables, so ``provider.get("DB_PASSWORD", max_age=60,
transform="json")`` works like Powertools' other providers.

Powertools caches and transforms (its ``"binary"`` transform base64-decodes
the decrypted text); this provider only decrypts.  Importing this module
imports Powertools; the rest of the package does not.
"""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parameters.base import BaseProvider

from .core import EnvSecrets

__all__ = ["EnvSecretsProvider"]


class EnvSecretsProvider(BaseProvider):
    """``EnvSecretsProvider(kms=None, environ=None, contexts=None, key_id=None)``."""

    def __init__(self, **env_secrets_options: Any):
        # Our own cache is bypassed (max_age=0): Powertools' cache decides.
        self._secrets = EnvSecrets(**env_secrets_options)
        super().__init__()

    def _get(self, name: str, **sdk_options: Any) -> str:
        return self._secrets.get(name, max_age=0)

    def _get_multiple(self, path: str, **sdk_options: Any) -> dict[str, str]:
        """Every variable whose name starts with ``path``, keyed by the rest of
        its name (as Powertools keys parameters below a path)."""
        names = sorted(n for n in self._secrets.environ if n.startswith(path) and n != path)
        values = self._secrets.get_many(names, max_age=0)
        return {name[len(path):]: value for name, value in values.items()}
