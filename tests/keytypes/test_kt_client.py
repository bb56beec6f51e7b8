"""Asymmetric and HMAC keys through the in-process client (the engine's handlers): AWS's
responses and errors end to end, public keys used outside KMS, and the docs/key-types.md
examples run as written."""
from __future__ import annotations

import base64
import hashlib
import json
import os

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

from kms_core import keytypes
from kms_core.keytypes import spec_facts

PAIRS = [(s, u) for s, f in spec_facts.SPECS.items() if s not in ("SM2", "SYMMETRIC_DEFAULT") for u in f.key_usages]


def _key(kms, spec: str, usage: str, **kw) -> str:
    return kms.create_key(KeySpec=spec, KeyUsage=usage, **kw)["KeyMetadata"]["KeyId"]


def _err(call) -> tuple[str, str]:
    from botocore.exceptions import ClientError
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response["Error"]["Code"], err.value.response["Error"].get("Message", "")


@pytest.mark.parametrize(("spec", "usage"), PAIRS)
def test_create_describe_and_public_key_report_aws_algorithms(kms, spec, usage):
    meta = kms.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]
    expected = spec_facts.facts(spec).algorithms(usage)
    fields = ("EncryptionAlgorithms", "SigningAlgorithms", "MacAlgorithms", "KeyAgreementAlgorithms")
    assert {k: meta[k] for k in fields if k in meta} == expected
    assert (meta["KeySpec"], meta["CustomerMasterKeySpec"], meta["KeyUsage"]) == (spec, spec, usage)
    described = kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]
    assert {k: described[k] for k in fields if k in described} == expected
    if spec.startswith("HMAC"):
        assert _err(lambda: kms.get_public_key(KeyId=meta["KeyId"]))[0] == "UnsupportedOperationException"
        return
    pub = kms.get_public_key(KeyId=meta["KeyId"])
    assert {k: pub[k] for k in fields if k in pub} == expected
    assert (pub["KeySpec"], pub["KeyUsage"], pub["KeyId"]) == (spec, usage, meta["Arn"])
    serialization.load_der_public_key(pub["PublicKey"])


def test_create_key_rules(kms):
    assert _err(lambda: kms.create_key(KeySpec="RSA_2048")) == (
        "ValidationException",
        "You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys.")
    assert _err(lambda: kms.create_key(KeySpec="RSA_2048", KeyUsage="KEY_AGREEMENT")) == (
        "ValidationException", "KeyUsage KEY_AGREEMENT is not compatible with KeySpec RSA_2048")
    assert _err(lambda: kms.create_key(KeySpec="ECC_SECG_P256K1", KeyUsage="KEY_AGREEMENT"))[0] == "ValidationException"
    assert _err(lambda: kms.create_key(KeySpec="SM2", KeyUsage="SIGN_VERIFY")) == (
        "UnsupportedOperationException", "KeySpec SM2 is not supported in this Region")


@pytest.mark.parametrize(("spec", "alg"), [
    ("RSA_2048", "RSASSA_PSS_SHA_256"), ("RSA_3072", "RSASSA_PKCS1_V1_5_SHA_512"), ("ECC_NIST_P384", "ECDSA_SHA_384"),
    ("ECC_SECG_P256K1", "ECDSA_SHA_256"), ("ECC_NIST_EDWARDS25519", "ED25519_SHA_512"),
    ("ML_DSA_44", "ML_DSA_SHAKE_256"),
])
def test_sign_verify_end_to_end(kms, spec, alg):
    key_id = _key(kms, spec, "SIGN_VERIFY")
    out = kms.sign(KeyId=key_id, Message=b"hello", SigningAlgorithm=alg)
    assert out["SigningAlgorithm"] == alg and out["KeyId"].endswith(key_id)
    assert kms.verify(KeyId=key_id, Message=b"hello", Signature=out["Signature"],
                      SigningAlgorithm=alg)["SignatureValid"] is True
    assert _err(lambda: kms.verify(KeyId=key_id, Message=b"hellO", Signature=out["Signature"],
                                   SigningAlgorithm=alg)) == ("KMSInvalidSignatureException", "")
    assert _err(lambda: kms.sign(KeyId=key_id, Message=b"m", SigningAlgorithm=alg, DryRun=True))[0] == \
        "DryRunOperationException"
    kms.disable_key(KeyId=key_id)
    assert _err(lambda: kms.sign(KeyId=key_id, Message=b"m", SigningAlgorithm=alg))[0] == "DisabledException"


def test_sign_digest_errors_and_wrong_usage(kms):
    key_id = _key(kms, "ECC_NIST_P256", "SIGN_VERIFY")
    assert _err(lambda: kms.sign(KeyId=key_id, Message=b"x" * 31, MessageType="DIGEST",
                                 SigningAlgorithm="ECDSA_SHA_256")) == (
        "ValidationException", "Digest is invalid length for algorithm ECDSA_SHA_256.")
    assert _err(lambda: kms.sign(KeyId=key_id, Message=b"x", SigningAlgorithm="ECDSA_SHA_384")) == (
        "InvalidKeyUsageException", "Algorithm ECDSA_SHA_384 is incompatible with key spec ECC_NIST_P256.")
    sym = kms.create_key()["KeyMetadata"]
    assert _err(lambda: kms.sign(KeyId=sym["KeyId"], Message=b"x", SigningAlgorithm="ECDSA_SHA_256")) == (
        "InvalidKeyUsageException", f"{sym['Arn']} key usage is ENCRYPT_DECRYPT which is not valid for Sign.")
    rsa_sign = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    assert _err(lambda: kms.encrypt(KeyId=rsa_sign["KeyId"], Plaintext=b"x",
                                    EncryptionAlgorithm="RSAES_OAEP_SHA_256")) == (
        "InvalidKeyUsageException", f"{rsa_sign['Arn']} key usage is SIGN_VERIFY which is not valid for Encrypt.")


def test_rsa_encrypt_decrypt_reencrypt(kms):
    key_id = _key(kms, "RSA_2048", "ENCRYPT_DECRYPT")
    public = serialization.load_der_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])
    outside = public.encrypt(b"made outside", padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
    out = kms.decrypt(KeyId=key_id, CiphertextBlob=outside, EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    assert (out["Plaintext"], out["EncryptionAlgorithm"]) == (b"made outside", "RSAES_OAEP_SHA_256")
    # Without KeyId KMS cannot know the key: the RSA ciphertext is not a KMS blob.
    assert _err(lambda: kms.decrypt(CiphertextBlob=outside))[0] == "InvalidCiphertextException"
    ct = kms.encrypt(KeyId=key_id, Plaintext=b"p" * 190, EncryptionAlgorithm="RSAES_OAEP_SHA_256")["CiphertextBlob"]
    assert _err(lambda: kms.encrypt(KeyId=key_id, Plaintext=b"p" * 191, EncryptionAlgorithm="RSAES_OAEP_SHA_256")) == (
        "ValidationException", "Algorithm RSAES_OAEP_SHA_256 and key spec RSA_2048 cannot encrypt data larger than "
                               "190 bytes.")
    sym = kms.create_key()["KeyMetadata"]["KeyId"]
    moved = kms.re_encrypt(CiphertextBlob=ct, SourceKeyId=key_id, SourceEncryptionAlgorithm="RSAES_OAEP_SHA_256",
                           DestinationKeyId=sym, DestinationEncryptionContext={"k": "v"})
    assert moved["SourceEncryptionAlgorithm"] == "RSAES_OAEP_SHA_256"
    assert kms.decrypt(CiphertextBlob=moved["CiphertextBlob"], EncryptionContext={"k": "v"})["Plaintext"] == b"p" * 190
    back = kms.re_encrypt(CiphertextBlob=moved["CiphertextBlob"], SourceEncryptionContext={"k": "v"},
                          DestinationKeyId=key_id, DestinationEncryptionAlgorithm="RSAES_OAEP_SHA_1")
    assert kms.decrypt(KeyId=key_id, CiphertextBlob=back["CiphertextBlob"],
                       EncryptionAlgorithm="RSAES_OAEP_SHA_1")["Plaintext"] == b"p" * 190


def test_hmac_end_to_end(kms):
    key_id = _key(kms, "HMAC_512", "GENERATE_VERIFY_MAC")
    mac = kms.generate_mac(KeyId=key_id, Message=b"m", MacAlgorithm="HMAC_SHA_512")["Mac"]
    assert kms.verify_mac(KeyId=key_id, Message=b"m", Mac=mac, MacAlgorithm="HMAC_SHA_512")["MacValid"] is True
    assert _err(lambda: kms.verify_mac(KeyId=key_id, Message=b"n", Mac=mac, MacAlgorithm="HMAC_SHA_512")) == (
        "KMSInvalidMacException", "")
    assert _err(lambda: kms.generate_mac(KeyId=key_id, Message=b"m", MacAlgorithm="HMAC_SHA_256")) == (
        "InvalidKeyUsageException", "Algorithm HMAC_SHA_256 is incompatible with key spec HMAC_512.")


def test_data_key_pairs(kms):
    wrapping = kms.create_key()["KeyMetadata"]["KeyId"]
    for pair_spec in ("RSA_2048", "ECC_NIST_P256", "ECC_NIST_EDWARDS25519", "ECC_SECG_P256K1"):
        out = kms.generate_data_key_pair(KeyId=wrapping, KeyPairSpec=pair_spec, EncryptionContext={"a": "b"})
        private = serialization.load_der_private_key(out["PrivateKeyPlaintext"], None)
        assert private.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo) == out["PublicKey"]
        assert kms.decrypt(CiphertextBlob=out["PrivateKeyCiphertextBlob"],
                           EncryptionContext={"a": "b"})["Plaintext"] == out["PrivateKeyPlaintext"]
        assert out["KeyPairSpec"] == pair_spec
    bare = kms.generate_data_key_pair_without_plaintext(KeyId=wrapping, KeyPairSpec="ECC_NIST_P384")
    assert "PrivateKeyPlaintext" not in bare
    serialization.load_der_private_key(kms.decrypt(CiphertextBlob=bare["PrivateKeyCiphertextBlob"])["Plaintext"], None)
    rsa_key = _key(kms, "RSA_2048", "ENCRYPT_DECRYPT")
    assert _err(lambda: kms.generate_data_key_pair(KeyId=rsa_key, KeyPairSpec="RSA_2048"))[0] == \
        "InvalidKeyUsageException"
    assert _err(lambda: kms.generate_data_key_pair(KeyId=wrapping, KeyPairSpec="SM2"))[0] == \
        "UnsupportedOperationException"


def _import(kms, key_id: str, material: bytes) -> None:
    params = kms.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm="RSA_AES_KEY_WRAP_SHA_256",
                                           WrappingKeySpec="RSA_3072")
    public = serialization.load_der_public_key(params["PublicKey"])
    aes = os.urandom(32)
    wrapped = public.encrypt(aes, padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
    kms.import_key_material(KeyId=key_id, ImportToken=params["ImportToken"],
                            EncryptedKeyMaterial=wrapped + aes_key_wrap_with_padding(aes, material),
                            ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")


def test_imported_asymmetric_and_hmac_material(kms):
    own = ec.generate_private_key(ec.SECP256R1())
    key_id = _key(kms, "ECC_NIST_P256", "SIGN_VERIFY", Origin="EXTERNAL")
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingImport"
    _import(kms, key_id, own.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    assert kms.get_public_key(KeyId=key_id)["PublicKey"] == own.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    sig = kms.sign(KeyId=key_id, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    own.public_key().verify(sig, b"m", ec.ECDSA(hashes.SHA256()))

    secret = os.urandom(32)
    hmac_id = _key(kms, "HMAC_256", "GENERATE_VERIFY_MAC", Origin="EXTERNAL")
    _import(kms, hmac_id, secret)
    import hmac as std_hmac
    assert kms.generate_mac(KeyId=hmac_id, Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"] == \
        std_hmac.new(secret, b"m", hashlib.sha256).digest()

    wrong = _key(kms, "ECC_NIST_P384", "SIGN_VERIFY", Origin="EXTERNAL")
    assert _err(lambda: _import(kms, wrong, own.private_bytes(serialization.Encoding.DER,
                                                               serialization.PrivateFormat.PKCS8,
                                                               serialization.NoEncryption())))[0] == \
        "IncorrectKeyMaterialException"


def test_derive_shared_secret(kms):
    key_id = _key(kms, "ECC_NIST_P521", "KEY_AGREEMENT")
    peer = ec.generate_private_key(ec.SECP521R1())
    spki = peer.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    out = kms.derive_shared_secret(KeyId=key_id, KeyAgreementAlgorithm="ECDH", PublicKey=spki)
    ours = serialization.load_der_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])
    assert out["SharedSecret"] == peer.exchange(ec.ECDH(), ours)
    assert out["KeyOrigin"] == "AWS_KMS"
    sign_key = kms.create_key(KeySpec="ECC_NIST_P521", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    assert _err(lambda: kms.derive_shared_secret(KeyId=sign_key["KeyId"], KeyAgreementAlgorithm="ECDH",
                                                 PublicKey=spki)) == (
        "InvalidKeyUsageException", f"{sign_key['Arn']} key usage is SIGN_VERIFY which is not valid for "
                                    "DeriveSharedSecret.")


# -- docs/key-types.md, as written ----------------------------------------------------------------
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_docs_jwt_es256_verifies_in_pyjwt(kms):
    key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    header = {"alg": "ES256", "typ": "JWT", "kid": key_id}
    claims = {"sub": "alice", "iat": 1767225600}
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    der = kms.sign(KeyId=key_id, Message=hashlib.sha256(signing_input.encode()).digest(),
                   MessageType="DIGEST", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    r, s = decode_dss_signature(der)
    token = f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
    public_key = serialization.load_der_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])
    assert jwt.decode(token, public_key, algorithms=["ES256"]) == claims
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, public_key, algorithms=["ES256"])


def test_docs_jwt_rs256_and_eddsa_verify_in_pyjwt(kms):
    for spec, alg, jwa in (("RSA_2048", "RSASSA_PKCS1_V1_5_SHA_256", "RS256"),
                           ("RSA_2048", "RSASSA_PSS_SHA_256", "PS256"),
                           ("ECC_NIST_EDWARDS25519", "ED25519_SHA_512", "EdDSA")):
        key_id = _key(kms, spec, "SIGN_VERIFY")
        signing_input = f"{_b64url(json.dumps({'alg': jwa, 'typ': 'JWT'}).encode())}.{_b64url(b'{}')}"
        sig = kms.sign(KeyId=key_id, Message=signing_input.encode(), SigningAlgorithm=alg)["Signature"]
        public_key = serialization.load_der_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])
        assert jwt.decode(f"{signing_input}.{_b64url(sig)}", public_key, algorithms=[jwa]) == {}


def test_docs_hmac_token(kms):
    key_id = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
    head = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{head}.{_b64url(json.dumps({'sub': 'bob'}).encode())}"
    mac = kms.generate_mac(KeyId=key_id, Message=signing_input.encode(), MacAlgorithm="HMAC_SHA_256")["Mac"]
    token = f"{signing_input}.{_b64url(mac)}"
    head, _, tag = token.rpartition(".")
    kms.verify_mac(KeyId=key_id, Message=head.encode(), MacAlgorithm="HMAC_SHA_256",
                   Mac=base64.urlsafe_b64decode(tag + "=" * (-len(tag) % 4)))
    assert _err(lambda: kms.verify_mac(KeyId=key_id, Message=head.encode() + b"x", MacAlgorithm="HMAC_SHA_256",
                                       Mac=mac))[0] == "KMSInvalidMacException"


def test_docs_ecdh_exchange(kms):
    alice = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT")["KeyMetadata"]["KeyId"]
    alice_public = kms.get_public_key(KeyId=alice)["PublicKey"]
    bob = ec.generate_private_key(ec.SECP256R1())
    bob_public = bob.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    z_alice = kms.derive_shared_secret(KeyId=alice, KeyAgreementAlgorithm="ECDH", PublicKey=bob_public)["SharedSecret"]
    z_bob = bob.exchange(ec.ECDH(), serialization.load_der_public_key(alice_public))
    assert z_alice == z_bob

    def session_key(z: bytes) -> bytes:
        return HKDF(hashes.SHA256(), 32, salt=None, info=b"alice-bob v1").derive(z)

    assert session_key(z_alice) == session_key(z_bob)


def test_every_registered_spec_has_facts():
    assert set(keytypes.specs()) <= set(spec_facts.SPECS)


def test_key_material_ids_only_for_symmetric_keys(kms):
    """AWS: KeyMaterialId / CurrentKeyMaterialId are present only for symmetric encryption keys."""
    rsa_key = _key(kms, "RSA_2048", "ENCRYPT_DECRYPT")
    sym = kms.create_key()["KeyMetadata"]
    assert "CurrentKeyMaterialId" in sym
    assert "CurrentKeyMaterialId" not in kms.describe_key(KeyId=rsa_key)["KeyMetadata"]
    ct = kms.encrypt(KeyId=rsa_key, Plaintext=b"p", EncryptionAlgorithm="RSAES_OAEP_SHA_1")["CiphertextBlob"]
    assert "KeyMaterialId" not in kms.decrypt(KeyId=rsa_key, CiphertextBlob=ct, EncryptionAlgorithm="RSAES_OAEP_SHA_1")
    moved = kms.re_encrypt(CiphertextBlob=ct, SourceKeyId=rsa_key, SourceEncryptionAlgorithm="RSAES_OAEP_SHA_1",
                           DestinationKeyId=sym["KeyId"])
    assert "SourceKeyMaterialId" not in moved and "DestinationKeyMaterialId" in moved
    back = kms.re_encrypt(CiphertextBlob=moved["CiphertextBlob"], DestinationKeyId=rsa_key,
                          DestinationEncryptionAlgorithm="RSAES_OAEP_SHA_256")
    assert "SourceKeyMaterialId" in back and "DestinationKeyMaterialId" not in back
    assert "KeyMaterialId" in kms.decrypt(CiphertextBlob=moved["CiphertextBlob"])


def test_asymmetric_encryption_refuses_an_encryption_context(kms):
    rsa_key = _key(kms, "RSA_2048", "ENCRYPT_DECRYPT")
    assert _err(lambda: kms.encrypt(KeyId=rsa_key, Plaintext=b"p", EncryptionAlgorithm="RSAES_OAEP_SHA_1",
                                    EncryptionContext={"a": "b"}))[0] == "ValidationException"
    ct = kms.encrypt(KeyId=rsa_key, Plaintext=b"p", EncryptionAlgorithm="RSAES_OAEP_SHA_1")["CiphertextBlob"]
    assert _err(lambda: kms.decrypt(KeyId=rsa_key, CiphertextBlob=ct, EncryptionAlgorithm="RSAES_OAEP_SHA_1",
                                    EncryptionContext={"a": "b"}))[0] == "ValidationException"


def test_policy_conditions_on_signing_and_mac_algorithms(make_client):
    """kms:SigningAlgorithm, kms:MessageType, kms:MacAlgorithm, kms:EncryptionAlgorithm (the
    algorithm actually asked for) in key-policy conditions."""
    admin = make_client()
    bob_arn = "arn:aws:iam::111122223333:user/bob"

    def policy(condition: dict) -> str:
        return json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*",
             "Resource": "*", "Condition": {"StringEquals": {"aws:PrincipalArn": "arn:aws:iam::111122223333:root"}}},
            {"Effect": "Allow", "Principal": {"AWS": bob_arn}, "Action": "kms:*", "Resource": "*",
             "Condition": {"StringEquals": condition}}]})

    bob = make_client(principal=bob_arn)
    rsa_sign = admin.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY", BypassPolicyLockoutSafetyCheck=True,
                                Policy=policy({"kms:SigningAlgorithm": "RSASSA_PSS_SHA_256",
                                               "kms:MessageType": "RAW"}))["KeyMetadata"]["KeyId"]
    bob.sign(KeyId=rsa_sign, Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256")
    assert _err(lambda: bob.sign(KeyId=rsa_sign, Message=b"m", SigningAlgorithm="RSASSA_PKCS1_V1_5_SHA_256"))[0] == \
        "AccessDeniedException"
    assert _err(lambda: bob.sign(KeyId=rsa_sign, Message=hashlib.sha256(b"m").digest(), MessageType="DIGEST",
                                 SigningAlgorithm="RSASSA_PSS_SHA_256"))[0] == "AccessDeniedException"
    rsa_enc = admin.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT", BypassPolicyLockoutSafetyCheck=True,
                               Policy=policy({"kms:EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}))["KeyMetadata"]["KeyId"]
    bob.encrypt(KeyId=rsa_enc, Plaintext=b"p", EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    assert _err(lambda: bob.encrypt(KeyId=rsa_enc, Plaintext=b"p", EncryptionAlgorithm="RSAES_OAEP_SHA_1"))[0] == \
        "AccessDeniedException"
    mac_key = admin.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC", BypassPolicyLockoutSafetyCheck=True,
                               Policy=policy({"kms:MacAlgorithm": "HMAC_SHA_256"}))["KeyMetadata"]["KeyId"]
    bob.generate_mac(KeyId=mac_key, Message=b"m", MacAlgorithm="HMAC_SHA_256")
    wrapping = admin.create_key(BypassPolicyLockoutSafetyCheck=True,
                                Policy=policy({"kms:DataKeyPairSpec": "ECC_NIST_P256"}))["KeyMetadata"]["KeyId"]
    bob.generate_data_key_pair(KeyId=wrapping, KeyPairSpec="ECC_NIST_P256")
    assert _err(lambda: bob.generate_data_key_pair(KeyId=wrapping, KeyPairSpec="RSA_2048"))[0] == \
        "AccessDeniedException"


def test_fuzz_signing_mac_and_agreement_requests_answer_aws_errors_only(kms):
    """Through validation and the handlers, on real keys: any mix of algorithm, message type,
    message and signature gives a result or an AWS error (4xx), never another exception."""
    from botocore.exceptions import ClientError
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    keys = [_key(kms, s, u) for s, u in (("RSA_2048", "SIGN_VERIFY"), ("ECC_NIST_P256", "SIGN_VERIFY"),
                                         ("ECC_NIST_EDWARDS25519", "SIGN_VERIFY"), ("ML_DSA_44", "SIGN_VERIFY"),
                                         ("HMAC_256", "GENERATE_VERIFY_MAC"), ("ECC_NIST_P384", "KEY_AGREEMENT"),
                                         ("RSA_3072", "ENCRYPT_DECRYPT"))]
    algs = st.sampled_from(["ECDSA_SHA_256", "RSASSA_PSS_SHA_512", "ED25519_PH_SHA_512", "ED25519_SHA_512",
                            "ML_DSA_SHAKE_256", "SM2DSA", "HMAC_SHA_256", "ECDH", "RSAES_OAEP_SHA_1", "bogus"])
    calls = st.sampled_from(["sign", "verify", "generate_mac", "verify_mac", "derive_shared_secret",
                             "get_public_key", "encrypt", "decrypt"])

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(keys), calls, st.binary(min_size=1, max_size=300), algs,
           st.sampled_from(["RAW", "DIGEST", "EXTERNAL_MU"]), st.booleans())
    def run(key_id, call, data, alg, mt, dry):
        args = {
            "sign": {"Message": data, "SigningAlgorithm": alg, "MessageType": mt, "DryRun": dry},
            "verify": {"Message": data, "Signature": data, "SigningAlgorithm": alg, "MessageType": mt},
            "generate_mac": {"Message": data, "MacAlgorithm": alg},
            "verify_mac": {"Message": data, "Mac": data, "MacAlgorithm": alg},
            "derive_shared_secret": {"PublicKey": data, "KeyAgreementAlgorithm": alg},
            "get_public_key": {},
            "encrypt": {"Plaintext": data, "EncryptionAlgorithm": alg},
            "decrypt": {"CiphertextBlob": data, "EncryptionAlgorithm": alg},
        }[call]
        try:
            getattr(kms, call)(KeyId=key_id, **args)
        except ClientError as err:
            assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 400
            assert err.response["Error"]["Code"].endswith("Exception")

    run()
