"""Lambda-style encrypted environment variables.

    from integrations.lambda_env import get_secret
    password = get_secret("DB_PASSWORD")          # decrypted once, cached 300 s

Values are what the Lambda console's encryption helpers (or ``aws kms
encrypt``) produce; see ``core`` for which KMS answers and which encryption
contexts are tried.  Importing this package imports nothing but the standard
library; KMS clients (the light SigV4 client or the embedded engine) are built
on first use.
"""
from __future__ import annotations

_EXPORTS = {
    "get_secret": "core", "get_secrets": "core", "decrypt_environ": "core",
    "with_secrets": "core", "refresh": "core", "clear_caches": "core", "configure": "core",
    "register_after_restore": "core", "EnvSecrets": "core", "decrypt_value": "core",
    "encrypt_value": "core", "default_contexts": "core", "function_context": "core",
    "resolve_client": "core", "DEFAULT_KEY_ID": "core",
    "encrypt_env_file": "envfile", "decrypt_env_file": "envfile", "load_env_file": "envfile",
    "LightKMSClient": "remote",
    "SecretError": "errors", "MissingSecretError": "errors", "NotCiphertextError": "errors",
    "WrongContextError": "errors", "KeyUnavailableError": "errors",
    "KeyDisabledError": "errors", "KeyDeletedError": "errors", "WrongKeyError": "errors",
    "AccessDeniedError": "errors", "KMSRequestError": "errors",
    "KMSUnavailableError": "errors", "CredentialsError": "errors", "TransformError": "errors",
    "EnvFileError": "errors", "EnvFileFormatError": "errors", "EnvFileTamperedError": "errors",
}

# Spelled out (linters and IDEs read a literal): the names of _EXPORTS.
__all__ = [
    "DEFAULT_KEY_ID",
    "AccessDeniedError",
    "CredentialsError",
    "EnvFileError",
    "EnvFileFormatError",
    "EnvFileTamperedError",
    "EnvSecrets",
    "KMSRequestError",
    "KMSUnavailableError",
    "KeyDeletedError",
    "KeyDisabledError",
    "KeyUnavailableError",
    "LightKMSClient",
    "MissingSecretError",
    "NotCiphertextError",
    "SecretError",
    "TransformError",
    "WrongContextError",
    "WrongKeyError",
    "clear_caches",
    "configure",
    "decrypt_env_file",
    "decrypt_environ",
    "decrypt_value",
    "default_contexts",
    "encrypt_env_file",
    "encrypt_value",
    "function_context",
    "get_secret",
    "get_secrets",
    "load_env_file",
    "refresh",
    "register_after_restore",
    "resolve_client",
    "with_secrets",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib  # noqa: PLC0415 - only on first access to a lazy attribute
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
