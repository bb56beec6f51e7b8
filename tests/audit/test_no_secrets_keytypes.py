"""Private keys of data key pairs, ECDH shared secrets, signed messages and the KMS keys' own
private keys never reach the audit log or the log output (nor the store, in clear)."""
from __future__ import annotations

import logging

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .conftest import raw_rows
from .test_no_secrets import _assert_absent, _store_bytes


def test_key_pair_private_keys_and_shared_secrets_stay_out(engine, audit, akms, caplog):
    caplog.set_level(logging.DEBUG)
    wrapping = akms.create_key()["KeyMetadata"]["KeyId"]
    pair = akms.generate_data_key_pair(KeyId=wrapping, KeyPairSpec="ECC_NIST_P256")
    agreement = akms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT")["KeyMetadata"]["KeyId"]
    peer = ec.generate_private_key(ec.SECP256R1())
    spki = peer.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    secret = akms.derive_shared_secret(KeyId=agreement, KeyAgreementAlgorithm="ECDH", PublicKey=spki)["SharedSecret"]
    signer = akms.create_key(KeySpec="ECC_NIST_P384", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    message = b"S3CR3T: a message to sign, never to log"
    akms.sign(KeyId=signer, Message=message, SigningAlgorithm="ECDSA_SHA_384")
    mac_key = akms.create_key(KeySpec="HMAC_512", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
    akms.generate_mac(KeyId=mac_key, Message=message, MacAlgorithm="HMAC_SHA_512")
    audit.flush()
    rows = "\n".join(raw_rows(audit)).encode()
    assert b"DeriveSharedSecret" in rows and b"GenerateDataKeyPair" in rows
    store, log_text = _store_bytes(engine), caplog.text.encode()
    for s in (pair["PrivateKeyPlaintext"], secret):
        _assert_absent(s, store, log_text, rows)
    _assert_absent(message, log_text, rows)
    # The KMS keys' own private keys are sealed in the store: their PKCS#8 never appears in clear.
    private = engine.repo.get(signer, engine.settings.account_id, engine.settings.region).materials[1].secret
    _assert_absent(private, store, log_text, rows)
