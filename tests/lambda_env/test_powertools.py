"""The Powertools Parameters provider adapter on the embedded engine."""
from __future__ import annotations

import base64
import json

import pytest
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from integrations.lambda_env.powertools import EnvSecretsProvider

from .test_core import cli_value, console_value


def test_provider_get_cache_transform_and_multiple(counting, kms):
    env = {"AWS_LAMBDA_FUNCTION_NAME": "orders-api",
           "DB_PASSWORD": console_value(kms, "pw-123456"),
           "APP_CFG": cli_value(kms, json.dumps({"a": 1})),
           "APP_BLOB": cli_value(kms, base64.b64encode(b"\x00\x01").decode())}
    provider = EnvSecretsProvider(kms=counting, environ=env)
    assert provider.get("DB_PASSWORD") == "pw-123456"
    assert provider.get("DB_PASSWORD") == "pw-123456"
    assert counting.calls == ["decrypt"]  # Powertools' cache
    provider.get("DB_PASSWORD", force_fetch=True)
    assert len(counting.calls) == 2
    assert provider.get("APP_CFG", transform="json") == {"a": 1}
    assert provider.get("APP_BLOB", transform="binary") == b"\x00\x01"
    assert provider.get_multiple("APP_") == {"BLOB": base64.b64encode(b"\x00\x01").decode(),
                                             "CFG": json.dumps({"a": 1})}


def test_provider_errors_are_wrapped_without_value(kms):
    provider = EnvSecretsProvider(kms=kms, environ={"PW": "hunter2"})
    with pytest.raises(GetParameterError) as e:
        provider.get("PW")
    assert "hunter2" not in str(e.value) and "PW" in str(e.value)
