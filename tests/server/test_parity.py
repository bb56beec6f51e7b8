"""Every operation through the wire answers exactly as the in-process client does.

The same script of calls (successes, validation errors, state-rule errors)
runs against boto3 -> `kms serve` and against ``kms_core.client()`` on a
separate store; outcomes are compared after replacing what is random by
nature (key ids in order of appearance, ciphertexts by their length,
timestamps, pagination markers).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re

import botocore.exceptions

import kms_core
from kms_core.engine import OPERATIONS_SERVED

ACCOUNT = "111122223333"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}")
_HEX64 = re.compile(r"\b[0-9a-f]{64}\b")
RANDOM_BLOBS = {"CiphertextBlob", "CiphertextForRecipient", "ImportToken", "PublicKey", "Mac", "SharedSecret"}
# Random and of varying length too (DER signatures and private keys).
RANDOM_LENGTH_BLOBS = {"Signature", "PrivateKeyPlaintext", "PrivateKeyCiphertextBlob"}
RANDOM_STRINGS = {"NextMarker", "GrantToken"}
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"  # the server's caller; the local client acts as her too
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"


def _wrap(public_key_der: bytes) -> bytes:
    """Wrap fresh key material for ImportKeyMaterial, as a BYOK user would."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    pub = serialization.load_der_public_key(public_key_der)
    return pub.encrypt(os.urandom(32), padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                     algorithm=hashes.SHA256(), label=None))
RANDOM_PLAINTEXT_OPS = {"GenerateDataKey", "GenerateRandom"}

POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
     "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"}]})


def script():
    """(operation, params or a function of saved results, name to save the result under)."""
    k1 = lambda s: s["k1"]["KeyMetadata"]["KeyId"]  # noqa: E731
    k2 = lambda s: s["k2"]["KeyMetadata"]["KeyId"]  # noqa: E731
    blob = lambda s: s["enc"]["CiphertextBlob"]  # noqa: E731
    sk = lambda s: s["sk"]["KeyMetadata"]["KeyId"]  # noqa: E731
    hk = lambda s: s["hk"]["KeyMetadata"]["KeyId"]  # noqa: E731
    ak = lambda s: s["ak"]["KeyMetadata"]["KeyId"]  # noqa: E731
    return [
        ("CreateKey", {"Description": "first", "Tags": [{"TagKey": "team", "TagValue": "red"}]}, "k1"),
        ("CreateKey", {}, "k2"),
        ("CreateKey", {"KeySpec": "NOPE"}, None),
        ("CreateKey", {"KeyUsage": "SIGN_VERIFY"}, None),
        ("DescribeKey", lambda s: {"KeyId": k1(s)}, None),
        ("DescribeKey", {"KeyId": "alias/missing"}, None),
        ("DescribeKey", {"KeyId": "1234abcd-12ab-34cd-56ef-1234567890ab"}, None),
        ("DescribeKey", {"KeyId": "alias/aws/s3"}, "managed"),
        ("UpdateKeyDescription", lambda s: {"KeyId": k1(s), "Description": "renamed"}, None),
        ("ListKeys", {}, None),
        ("ListKeys", {"Limit": 1}, None),
        ("ListKeys", {"Limit": 5000}, None),
        ("ListKeys", {"Marker": "not-a-marker"}, None),
        ("CreateAlias", lambda s: {"AliasName": "alias/app", "TargetKeyId": k1(s)}, None),
        ("CreateAlias", lambda s: {"AliasName": "alias/app", "TargetKeyId": k1(s)}, None),
        ("CreateAlias", lambda s: {"AliasName": "alias/aws/mine", "TargetKeyId": k1(s)}, None),
        ("CreateAlias", lambda s: {"AliasName": "nope", "TargetKeyId": k1(s)}, None),
        ("UpdateAlias", lambda s: {"AliasName": "alias/app", "TargetKeyId": k2(s)}, None),
        ("ListAliases", {}, None),
        ("ListAliases", lambda s: {"KeyId": k2(s)}, None),
        ("Encrypt", {"KeyId": "alias/app", "Plaintext": b"hello", "EncryptionContext": {"a": "b"}}, "enc"),
        ("Encrypt", {"KeyId": "alias/nowhere", "Plaintext": b"x"}, None),
        ("Encrypt", lambda s: {"KeyId": k1(s), "Plaintext": b"x" * 4097}, None),
        ("Encrypt", lambda s: {"KeyId": k1(s), "Plaintext": b"x", "EncryptionAlgorithm": "RSAES_OAEP_SHA_1"}, None),
        ("Decrypt", lambda s: {"CiphertextBlob": blob(s), "EncryptionContext": {"a": "b"}}, None),
        ("Decrypt", lambda s: {"CiphertextBlob": blob(s), "EncryptionContext": {"a": "c"}}, None),
        ("Decrypt", lambda s: {"CiphertextBlob": blob(s), "EncryptionContext": {"a": "b"}, "KeyId": k1(s)}, None),
        ("Decrypt", {"CiphertextBlob": b"\x01" * 80}, None),
        ("Decrypt", lambda s: {"CiphertextBlob": blob(s), "EncryptionContext": {"a": "b"}, "DryRun": True}, None),
        ("ReEncrypt", lambda s: {"CiphertextBlob": blob(s), "SourceEncryptionContext": {"a": "b"},
                                 "DestinationKeyId": k1(s)}, "re"),
        ("Decrypt", lambda s: {"CiphertextBlob": s["re"]["CiphertextBlob"]}, None),
        ("GenerateDataKey", lambda s: {"KeyId": k1(s), "KeySpec": "AES_256"}, None),
        ("GenerateDataKey", lambda s: {"KeyId": k1(s), "NumberOfBytes": 1025}, None),
        ("GenerateDataKey", lambda s: {"KeyId": k1(s), "NumberOfBytes": 16, "KeySpec": "AES_128"}, None),
        ("GenerateDataKey", lambda s: {"KeyId": k1(s)}, None),
        ("GenerateDataKeyWithoutPlaintext", lambda s: {"KeyId": k1(s), "NumberOfBytes": 64}, None),
        ("GenerateRandom", {"NumberOfBytes": 24}, None),
        ("GenerateRandom", {"NumberOfBytes": 2000}, None),
        ("EnableKeyRotation", lambda s: {"KeyId": k1(s), "RotationPeriodInDays": 90}, None),
        ("EnableKeyRotation", lambda s: {"KeyId": k1(s), "RotationPeriodInDays": 3000}, None),
        ("GetKeyRotationStatus", lambda s: {"KeyId": k1(s)}, None),
        ("RotateKeyOnDemand", lambda s: {"KeyId": k1(s)}, None),
        ("ListKeyRotations", lambda s: {"KeyId": k1(s)}, None),
        ("DisableKeyRotation", lambda s: {"KeyId": k1(s)}, None),
        ("Decrypt", lambda s: {"CiphertextBlob": blob(s), "EncryptionContext": {"a": "b"}}, None),
        ("TagResource", lambda s: {"KeyId": k1(s), "Tags": [{"TagKey": "env", "TagValue": "prod"}]}, None),
        ("TagResource", lambda s: {"KeyId": k1(s), "Tags": [{"TagKey": "aws:x", "TagValue": "v"}]}, None),
        ("UntagResource", lambda s: {"KeyId": k1(s), "TagKeys": ["team"]}, None),
        ("ListResourceTags", lambda s: {"KeyId": k1(s)}, None),
        ("GetKeyPolicy", lambda s: {"KeyId": k1(s), "PolicyName": "default"}, None),
        ("GetKeyPolicy", lambda s: {"KeyId": k1(s), "PolicyName": "other"}, None),
        ("ListKeyPolicies", lambda s: {"KeyId": k1(s)}, None),
        ("PutKeyPolicy", lambda s: {"KeyId": k1(s), "PolicyName": "default", "Policy": POLICY}, None),
        ("PutKeyPolicy", lambda s: {"KeyId": k1(s), "PolicyName": "default", "Policy": "{not json"}, None),
        ("DisableKey", lambda s: {"KeyId": k2(s)}, None),
        ("Encrypt", {"KeyId": "alias/app", "Plaintext": b"x"}, None),
        ("DescribeKey", {"KeyId": "alias/app"}, None),
        ("EnableKey", lambda s: {"KeyId": k2(s)}, None),
        ("ScheduleKeyDeletion", lambda s: {"KeyId": k2(s), "PendingWindowInDays": 3}, None),
        ("ScheduleKeyDeletion", lambda s: {"KeyId": k2(s), "PendingWindowInDays": 7}, None),
        ("Encrypt", lambda s: {"KeyId": k2(s), "Plaintext": b"x"}, None),
        ("EnableKey", lambda s: {"KeyId": k2(s)}, None),
        ("CancelKeyDeletion", lambda s: {"KeyId": k2(s)}, None),
        ("CancelKeyDeletion", lambda s: {"KeyId": k2(s)}, None),
        ("DisableKey", lambda s: {"KeyId": "alias/aws/s3"}, None),
        ("DeleteAlias", {"AliasName": "alias/app"}, None),
        ("DeleteAlias", {"AliasName": "alias/app"}, None),
        # Grants.
        ("CreateGrant", lambda s: {"KeyId": k1(s), "GranteePrincipal": BOB, "RetiringPrincipal": ALICE,
                                   "Operations": ["Decrypt", "Encrypt"], "Name": "g1",
                                   "Constraints": {"EncryptionContextSubset": {"app": "x"}}}, "grant"),
        ("CreateGrant", lambda s: {"KeyId": k1(s), "GranteePrincipal": BOB, "RetiringPrincipal": ALICE,
                                   "Operations": ["Decrypt", "Encrypt"], "Name": "g1",
                                   "Constraints": {"EncryptionContextSubset": {"app": "x"}}}, None),
        ("CreateGrant", lambda s: {"KeyId": k1(s), "GranteePrincipal": BOB, "Operations": ["Sign"]}, None),
        ("CreateGrant", lambda s: {"KeyId": k1(s), "GranteePrincipal": BOB, "Operations": ["Decrypt"],
                                   "Name": "g2"}, "grant2"),
        ("ListGrants", lambda s: {"KeyId": k1(s)}, None),
        ("ListRetirableGrants", {"RetiringPrincipal": ALICE}, None),
        ("RetireGrant", lambda s: {"GrantToken": s["grant"]["GrantToken"]}, None),
        ("RevokeGrant", lambda s: {"KeyId": k1(s), "GrantId": s["grant2"]["GrantId"]}, None),
        ("RevokeGrant", lambda s: {"KeyId": k1(s), "GrantId": s["grant2"]["GrantId"]}, None),
        ("ListGrants", lambda s: {"KeyId": k1(s)}, None),
        # Key material from the user (BYOK).
        ("CreateKey", {"Origin": "EXTERNAL", "Description": "byok"}, "ext"),
        ("Encrypt", lambda s: {"KeyId": s["ext"]["KeyMetadata"]["KeyId"], "Plaintext": b"x"}, None),
        ("GetParametersForImport", lambda s: {"KeyId": s["ext"]["KeyMetadata"]["KeyId"],
                                              "WrappingAlgorithm": "RSAES_OAEP_SHA_256",
                                              "WrappingKeySpec": "RSA_2048"}, "imp"),
        ("ImportKeyMaterial", lambda s: {"KeyId": s["ext"]["KeyMetadata"]["KeyId"], "ImportToken": b"t" * 64,
                                         "EncryptedKeyMaterial": _wrap(s["imp"]["PublicKey"]),
                                         "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}, None),
        ("ImportKeyMaterial", lambda s: {"KeyId": s["ext"]["KeyMetadata"]["KeyId"],
                                         "ImportToken": s["imp"]["ImportToken"],
                                         "EncryptedKeyMaterial": _wrap(s["imp"]["PublicKey"]),
                                         "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}, None),
        ("Encrypt", lambda s: {"KeyId": s["ext"]["KeyMetadata"]["KeyId"], "Plaintext": b"x"}, None),
        ("DeleteImportedKeyMaterial", lambda s: {"KeyId": s["ext"]["KeyMetadata"]["KeyId"]}, None),
        ("Encrypt", lambda s: {"KeyId": s["ext"]["KeyMetadata"]["KeyId"], "Plaintext": b"x"}, None),
        # Asymmetric and HMAC keys.
        ("CreateKey", {"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}, "sk"),
        ("CreateKey", {"KeySpec": "RSA_2048"}, None),
        ("Sign", lambda s: {"KeyId": sk(s), "Message": b"m", "SigningAlgorithm": "ECDSA_SHA_256"}, "sig"),
        ("Verify", lambda s: {"KeyId": sk(s), "Message": b"m", "SigningAlgorithm": "ECDSA_SHA_256",
                              "Signature": s["sig"]["Signature"]}, None),
        ("Verify", lambda s: {"KeyId": sk(s), "Message": b"n", "SigningAlgorithm": "ECDSA_SHA_256",
                              "Signature": s["sig"]["Signature"]}, None),
        ("Sign", lambda s: {"KeyId": sk(s), "Message": b"short", "MessageType": "DIGEST",
                            "SigningAlgorithm": "ECDSA_SHA_256"}, None),
        ("Sign", lambda s: {"KeyId": k1(s), "Message": b"m", "SigningAlgorithm": "RSASSA_PSS_SHA_256"}, None),
        ("GetPublicKey", lambda s: {"KeyId": sk(s)}, None),
        ("GetPublicKey", lambda s: {"KeyId": k1(s)}, None),
        ("CreateKey", {"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}, "hk"),
        ("GenerateMac", lambda s: {"KeyId": hk(s), "Message": b"m", "MacAlgorithm": "HMAC_SHA_256"}, "mac"),
        ("VerifyMac", lambda s: {"KeyId": hk(s), "Message": b"m", "MacAlgorithm": "HMAC_SHA_256",
                                 "Mac": s["mac"]["Mac"]}, None),
        ("VerifyMac", lambda s: {"KeyId": hk(s), "Message": b"n", "MacAlgorithm": "HMAC_SHA_256",
                                 "Mac": s["mac"]["Mac"]}, None),
        ("CreateKey", {"KeySpec": "ECC_NIST_P256", "KeyUsage": "KEY_AGREEMENT"}, "ak"),
        ("GetPublicKey", lambda s: {"KeyId": ak(s)}, "apub"),
        ("DeriveSharedSecret", lambda s: {"KeyId": ak(s), "KeyAgreementAlgorithm": "ECDH",
                                          "PublicKey": s["apub"]["PublicKey"]}, None),
        ("DeriveSharedSecret", lambda s: {"KeyId": sk(s), "KeyAgreementAlgorithm": "ECDH",
                                          "PublicKey": s["apub"]["PublicKey"]}, None),
        ("GenerateDataKeyPair", lambda s: {"KeyId": k1(s), "KeyPairSpec": "ECC_NIST_P256"}, None),
        ("GenerateDataKeyPairWithoutPlaintext", lambda s: {"KeyId": k1(s), "KeyPairSpec": "RSA_2048"}, None),
        ("GenerateDataKeyPair", lambda s: {"KeyId": sk(s), "KeyPairSpec": "RSA_2048"}, None),
        # GetKeyLastUsage on an unused key (the server audits, the local client does not:
        # a used key would differ) and with an alias, which it does not accept.
        ("CreateKey", {"Description": "last usage"}, "lu"),
        ("GetKeyLastUsage", lambda s: {"KeyId": s["lu"]["KeyMetadata"]["KeyId"]}, None),
        ("GetKeyLastUsage", {"KeyId": "alias/parity"}, None),
        # An operation of AWS KMS that this engine does not implement.
        ("DescribeCustomKeyStores", {}, None),
        # Multi-Region keys: replicate, then swap the primary (k1 is single-Region: refused).
        ("ReplicateKey", lambda s: {"KeyId": k1(s), "ReplicaRegion": "us-west-2"}, None),
        ("CreateKey", {"MultiRegion": True}, "mrk"),
        ("ReplicateKey", lambda s: {"KeyId": s["mrk"]["KeyMetadata"]["KeyId"], "ReplicaRegion": "us-west-2"}, None),
        ("UpdatePrimaryRegion", lambda s: {"KeyId": s["mrk"]["KeyMetadata"]["KeyId"], "PrimaryRegion": "us-west-2"},
         None),
    ]


class _Ids:
    def __init__(self):
        self.ids: dict[str, str] = {}

    def sub(self, text: str) -> str:
        def repl(m):
            return self.ids.setdefault(m.group(0), f"<id{len(self.ids)}>")
        return _HEX64.sub("<hex64>", _UUID.sub(repl, text))


def _normalise(op: str, value, ids: _Ids, field: str = ""):
    if isinstance(value, dict):
        return {k: _normalise(op, v, ids, k) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [_normalise(op, v, ids, field) for v in value]
    if isinstance(value, (bytes, bytearray)):
        if field in RANDOM_LENGTH_BLOBS:
            return "<random bytes>"
        if field in RANDOM_BLOBS or (field == "Plaintext" and op in RANDOM_PLAINTEXT_OPS):
            return f"<{len(value)} random bytes>"
        return bytes(value)
    if isinstance(value, dt.datetime):
        assert value.tzinfo is not None
        return "<datetime>"
    if isinstance(value, str):
        return f"<{field}>" if field in RANDOM_STRINGS else ids.sub(value)
    return value


def run(client) -> list:
    saved, ids, outcomes = {}, _Ids(), []
    for op, params, name in script():
        params = params(saved) if callable(params) else params
        method = getattr(client, re.sub(r"(?<!^)(?=[A-Z])", "_", op).lower())
        try:
            result = method(**params)
        except botocore.exceptions.ClientError as e:
            err = e.response["Error"]
            outcomes.append((op, "error", err["Code"], ids.sub(err.get("Message", ""))))
            continue
        if name:
            saved[name] = result
        out = _normalise(op, result, ids)
        for field in ("Keys", "Aliases", "Grants"):  # listed in id order, and ids are random
            if field in out:
                out[field] = len(out[field]) if out.get("Truncated") else sorted(out[field], key=repr)
        outcomes.append((op, "ok", out))
    return outcomes


# A region no other test uses: the shared server's other keys live elsewhere.
REGION = "ap-northeast-3"


def test_every_operation_matches_the_in_process_client(server, access_key, tmp_path):
    kms_remote = server.client(access_key, region=REGION)
    local = kms_core.client(home=tmp_path / "local", root_key=os.urandom(32), region=REGION,
                            account_id=ACCOUNT, principal=ALICE)
    expected = run(local)
    got = run(kms_remote)
    for want, have in zip(expected, got, strict=False):
        assert have == want
    assert len(got) == len(expected)
    # The script reaches every operation the engine serves, with successes and errors.
    ops = {o[0] for o in expected}
    assert set(OPERATIONS_SERVED) <= ops
    assert sum(o[1] == "error" for o in expected) >= 20
    assert sum(o[1] == "ok" for o in expected) >= 30
