"""Plaintext, data keys and the root key never show up in logs, reprs or
error messages."""
from __future__ import annotations

import base64
import logging

import pytest
from botocore.exceptions import ClientError


def _forms(secret: bytes):
    """The ways a secret could leak into text."""
    return [secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode(),
            base64.urlsafe_b64encode(secret).decode().rstrip("="), repr(secret)[2:-1]]


def _leaks(text: str, secrets) -> list[str]:
    return [f for s in secrets for f in _forms(s) if f and f in text]


def test_no_secrets_in_logs_errors_or_reprs(kms, engine, root_key, caplog):
    caplog.set_level(logging.DEBUG)
    secret = b"correct horse battery staple 4242"
    kid = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=kid, Plaintext=secret, EncryptionContext={"k": "v"})["CiphertextBlob"]
    dk = kms.generate_data_key(KeyId=kid, KeySpec="AES_256")
    kms.decrypt(CiphertextBlob=blob, EncryptionContext={"k": "v"})
    kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext={"k": "v"}, DestinationKeyId=kid)
    errors = []
    for call in (
        lambda: kms.decrypt(CiphertextBlob=blob, EncryptionContext={"k": "other"}),
        lambda: kms.decrypt(CiphertextBlob=blob[:-1] + bytes([blob[-1] ^ 1]), EncryptionContext={"k": "v"}),
        lambda: kms.encrypt(KeyId=kid, Plaintext=secret * 200),
        lambda: kms.encrypt(KeyId="alias/missing", Plaintext=secret),
        lambda: kms.decrypt(CiphertextBlob=dk["Plaintext"]),
    ):
        with pytest.raises(ClientError) as info:
            call()
        errors.append(str(info.value))
        errors.append(repr(info.value.response))
    kms.disable_key(KeyId=kid)
    with pytest.raises(ClientError) as info:
        kms.encrypt(KeyId=kid, Plaintext=secret)
    errors.append(str(info.value))
    secrets = [secret, dk["Plaintext"], root_key]
    assert _leaks("x" + base64.b64encode(secret).decode(), secrets)  # the detector works
    logged = "\n".join(r.getMessage() + repr(r.args) for r in caplog.records)
    assert _leaks(logged, secrets) == []
    assert _leaks("\n".join(errors), secrets) == []
    assert _leaks(repr(kms) + repr(engine) + repr(engine.settings) + str(engine.settings), [root_key]) == []
