"""The key-type half of the operations: AWS's responses and errors, DryRun, without an engine."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from keytypes_helpers import material

from kms_core.errors import KMSError
from kms_core.keytypes import operations as ops

ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@dataclass
class Rec:
    key_spec: str
    key_usage: str
    arn: str = ARN
    origin: str = "AWS_KMS"


def _code(call) -> tuple[str, str]:
    with pytest.raises(KMSError) as err:
        call()
    return err.value.code, err.value.message


def test_sign_verify_responses_and_invalid_signature(materials):
    rec, m = Rec("ECC_NIST_P256", "SIGN_VERIFY"), materials["ECC_NIST_P256"]
    p = {"Message": b"hi", "SigningAlgorithm": "ECDSA_SHA_256"}
    out = ops.sign(rec, m, p)
    assert set(out) == {"KeyId", "Signature", "SigningAlgorithm"} and out["KeyId"] == ARN
    assert ops.verify(rec, m, {**p, "Signature": out["Signature"]}) == {
        "KeyId": ARN, "SignatureValid": True, "SigningAlgorithm": "ECDSA_SHA_256"}
    assert _code(lambda: ops.verify(rec, m, {**p, "Message": b"ho", "Signature": out["Signature"]})) == (
        "KMSInvalidSignatureException", "")
    # MessageType defaults to RAW; a DIGEST signature verifies as RAW over the message.
    d = ops.sign(rec, m, {**p, "Message": hashlib.sha256(b"hi").digest(), "MessageType": "DIGEST"})
    assert ops.verify(rec, m, {**p, "Signature": d["Signature"]})["SignatureValid"]


@pytest.mark.parametrize(("spec", "usage", "operation"), [
    ("RSA_2048", "ENCRYPT_DECRYPT", "Sign"), ("ECC_NIST_P256", "KEY_AGREEMENT", "Verify"),
    ("HMAC_256", "GENERATE_VERIFY_MAC", "Sign"),
])
def test_wrong_key_usage_is_aws_message(spec, usage, operation, materials):
    rec = Rec(spec, usage)
    fn = ops.sign if operation == "Sign" else ops.verify
    p = {"Message": b"m", "SigningAlgorithm": "ECDSA_SHA_256", "Signature": b"s"}
    assert _code(lambda: fn(rec, materials[spec], p)) == (
        "InvalidKeyUsageException", f"{ARN} key usage is {usage} which is not valid for {operation}.")


def test_dry_run_after_every_check(materials):
    rec, m = Rec("RSA_2048", "SIGN_VERIFY"), materials["RSA_2048"]
    ok = {"Message": b"m", "SigningAlgorithm": "RSASSA_PSS_SHA_256", "DryRun": True}
    assert _code(lambda: ops.sign(rec, m, ok))[0] == "DryRunOperationException"
    assert _code(lambda: ops.sign(rec, m, {**ok, "SigningAlgorithm": "ECDSA_SHA_256"}))[0] == \
        "InvalidKeyUsageException"
    assert _code(lambda: ops.sign(rec, m, {**ok, "MessageType": "DIGEST"}))[0] == "ValidationException"
    hm = Rec("HMAC_256", "GENERATE_VERIFY_MAC")
    assert _code(lambda: ops.generate_mac(hm, material("HMAC_256"), {
        "Message": b"m", "MacAlgorithm": "HMAC_SHA_256", "DryRun": True})) == (
        "DryRunOperationException", ops.DRY_RUN_MESSAGE)


def test_mac_responses_and_invalid_mac():
    rec, m = Rec("HMAC_384", "GENERATE_VERIFY_MAC"), material("HMAC_384")
    p = {"Message": b"m", "MacAlgorithm": "HMAC_SHA_384"}
    out = ops.generate_mac(rec, m, p)
    assert out["KeyId"] == ARN and len(out["Mac"]) == 48
    assert ops.verify_mac(rec, m, {**p, "Mac": out["Mac"]}) == {"KeyId": ARN, "MacValid": True,
                                                                 "MacAlgorithm": "HMAC_SHA_384"}
    assert _code(lambda: ops.verify_mac(rec, m, {**p, "Mac": out["Mac"][:-1] + b"\0"})) == (
        "KMSInvalidMacException", "")


def test_get_public_key_response(materials):
    rec, m = Rec("RSA_3072", "ENCRYPT_DECRYPT"), materials["RSA_3072"]
    out = ops.get_public_key(rec, m)
    assert out == {"KeyId": ARN, "PublicKey": out["PublicKey"], "CustomerMasterKeySpec": "RSA_3072",
                   "KeySpec": "RSA_3072", "KeyUsage": "ENCRYPT_DECRYPT",
                   "EncryptionAlgorithms": ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]}
    serialization.load_der_public_key(out["PublicKey"])
    ka = ops.get_public_key(Rec("ECC_NIST_P384", "KEY_AGREEMENT"), materials["ECC_NIST_P384"])
    assert ka["KeyAgreementAlgorithms"] == ["ECDH"] and "SigningAlgorithms" not in ka
    assert _code(lambda: ops.get_public_key(Rec("HMAC_256", "GENERATE_VERIFY_MAC"), material("HMAC_256")))[0] == \
        "UnsupportedOperationException"


def test_rsa_encrypter_refuses_an_encryption_context_and_symmetric_default(materials):
    from kms_core import keytypes
    from kms_core.envelope import encode_context

    enc, m = keytypes.get("RSA_2048").encrypter(), materials["RSA_2048"]
    ct = enc.encrypt(m, b"p", "RSAES_OAEP_SHA_256", encode_context({}))  # no context: its canonical form
    assert enc.decrypt(m, ct, "RSAES_OAEP_SHA_256", b"") == b"p"
    for call in (lambda: enc.encrypt(m, b"p", "RSAES_OAEP_SHA_256", encode_context({"a": "b"})),
                 lambda: enc.decrypt(m, ct, "RSAES_OAEP_SHA_256", encode_context({"a": "b"}))):
        assert _code(call)[0] == "ValidationException"
    assert _code(lambda: enc.encrypt(m, b"p", "SYMMETRIC_DEFAULT", b"")) == (
        "InvalidKeyUsageException", "Algorithm SYMMETRIC_DEFAULT is incompatible with key spec RSA_2048.")


def test_derive_shared_secret_response(materials):
    rec, m = Rec("ECC_NIST_P256", "KEY_AGREEMENT", origin="EXTERNAL"), materials["ECC_NIST_P256"]
    peer = ec.generate_private_key(ec.SECP256R1())
    spki = peer.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    out = ops.derive_shared_secret(rec, m, {"KeyAgreementAlgorithm": "ECDH", "PublicKey": spki})
    assert out["KeyOrigin"] == "EXTERNAL" and out["KeyAgreementAlgorithm"] == "ECDH" and len(out["SharedSecret"]) == 32
    assert _code(lambda: ops.derive_shared_secret(Rec("ECC_NIST_P256", "SIGN_VERIFY"), m, {
        "KeyAgreementAlgorithm": "ECDH", "PublicKey": spki})) == (
        "InvalidKeyUsageException", f"{ARN} key usage is SIGN_VERIFY which is not valid for DeriveSharedSecret.")


@pytest.mark.parametrize(("params", "expected"), [
    ({}, ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT")),
    ({"KeySpec": "RSA_4096", "KeyUsage": "SIGN_VERIFY"}, ("RSA_4096", "SIGN_VERIFY")),
    ({"CustomerMasterKeySpec": "ECC_NIST_P256", "KeyUsage": "KEY_AGREEMENT"}, ("ECC_NIST_P256", "KEY_AGREEMENT")),
    ({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC", "Origin": "EXTERNAL"},
     ("HMAC_256", "GENERATE_VERIFY_MAC")),
])
def test_create_key_spec_accepts(params, expected):
    assert ops.create_key_spec(params, "us-east-1") == expected


@pytest.mark.parametrize(("params", "region", "code"), [
    ({"KeySpec": "RSA_2048"}, "us-east-1", "ValidationException"),
    ({"KeySpec": "RSA_2048", "KeyUsage": "KEY_AGREEMENT"}, "us-east-1", "ValidationException"),
    ({"KeySpec": "ECC_SECG_P256K1", "KeyUsage": "KEY_AGREEMENT"}, "us-east-1", "ValidationException"),
    ({"KeySpec": "SM2", "KeyUsage": "SIGN_VERIFY"}, "us-east-1", "UnsupportedOperationException"),
    ({"KeySpec": "SM2", "KeyUsage": "SIGN_VERIFY"}, "cn-north-1", "UnsupportedOperationException"),
    ({"KeySpec": "RSA_2048", "CustomerMasterKeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY"}, "us-east-1",
     "ValidationException"),
    ({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC", "Origin": "AWS_CLOUDHSM"}, "us-east-1",
     "UnsupportedOperationException"),
])
def test_create_key_spec_refuses(params, region, code):
    assert _code(lambda: ops.create_key_spec(params, region))[0] == code


@pytest.mark.parametrize("pair_spec", ["RSA_2048", "ECC_NIST_P256", "ECC_SECG_P256K1", "ECC_NIST_EDWARDS25519"])
def test_data_key_pairs(pair_spec):
    private, public = ops.new_data_key_pair(pair_spec, "us-east-1")
    key = serialization.load_der_private_key(private, None)
    assert key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo) == public
    assert _code(lambda: ops.new_data_key_pair("ML_DSA_44", "us-east-1"))[0] == "ValidationException"
    assert _code(lambda: ops.new_data_key_pair("SM2", "eu-west-1"))[0] == "UnsupportedOperationException"


def test_fuzz_operations_answer_kmserror_only(materials):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    recs = [Rec(s, u) for s, u in (("RSA_2048", "SIGN_VERIFY"), ("RSA_2048", "ENCRYPT_DECRYPT"),
                                   ("ECC_NIST_P256", "KEY_AGREEMENT"), ("ECC_NIST_EDWARDS25519", "SIGN_VERIFY"),
                                   ("ML_DSA_44", "SIGN_VERIFY"), ("HMAC_256", "GENERATE_VERIFY_MAC"))]
    names = st.sampled_from(["ECDSA_SHA_256", "RSASSA_PSS_SHA_256", "ED25519_PH_SHA_512", "ML_DSA_SHAKE_256",
                             "RSAES_OAEP_SHA_1", "ECDH", "HMAC_SHA_256", "x"])
    calls = [ops.sign, ops.verify, ops.generate_mac, ops.verify_mac, ops.derive_shared_secret, ops.get_public_key]

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.sampled_from(recs), st.sampled_from(calls), st.binary(max_size=300), names,
           st.sampled_from(["RAW", "DIGEST", "EXTERNAL_MU"]), st.booleans())
    def run(rec, call, data, alg, mt, dry):
        p = {"Message": data, "Signature": data, "Mac": data, "PublicKey": data,
             "SigningAlgorithm": alg, "MacAlgorithm": alg, "KeyAgreementAlgorithm": alg,
             "MessageType": mt, "DryRun": dry}
        try:
            out = call(rec, materials[rec.key_spec], p) if call is not ops.get_public_key \
                else call(rec, materials[rec.key_spec])
        except KMSError:
            return
        assert out["KeyId"] == ARN and (not dry or call is ops.get_public_key)  # GetPublicKey has no DryRun

    run()
