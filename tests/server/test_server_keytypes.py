"""Sign / Verify / GetPublicKey through boto3 against `kms serve` (AWS JSON 1.1 + SigV4)."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding


@pytest.mark.parametrize(("spec", "alg"), [("ECC_NIST_P384", "ECDSA_SHA_384"), ("RSA_2048", "RSASSA_PSS_SHA_512"),
                                           ("ML_DSA_87", "ML_DSA_SHAKE_256")])
def test_sign_verify_get_public_key_over_the_wire(kms_remote, spec, alg):
    meta = kms_remote.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    assert meta["SigningAlgorithms"]
    out = kms_remote.sign(KeyId=meta["KeyId"], Message=b"over the wire", SigningAlgorithm=alg)
    assert out["KeyId"] == meta["Arn"] and out["SigningAlgorithm"] == alg
    assert kms_remote.verify(KeyId=meta["KeyId"], Message=b"over the wire", Signature=out["Signature"],
                             SigningAlgorithm=alg)["SignatureValid"] is True
    pub = kms_remote.get_public_key(KeyId=meta["KeyId"])
    assert (pub["KeySpec"], pub["KeyUsage"]) == (spec, "SIGN_VERIFY")
    key = serialization.load_der_public_key(pub["PublicKey"])
    if spec.startswith("ECC"):
        key.verify(out["Signature"], b"over the wire", ec.ECDSA(hashes.SHA384()))
    elif spec.startswith("RSA"):
        key.verify(out["Signature"], b"over the wire",
                   padding.PSS(padding.MGF1(hashes.SHA512()), 64), hashes.SHA512())
    else:
        key.verify(out["Signature"], b"over the wire")
    with pytest.raises(ClientError) as err:
        kms_remote.verify(KeyId=meta["KeyId"], Message=b"over the wirE", Signature=out["Signature"],
                          SigningAlgorithm=alg)
    assert err.value.response["Error"]["Code"] == "KMSInvalidSignatureException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_digest_length_error_over_the_wire(kms_remote):
    key_id = kms_remote.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as err:
        kms_remote.sign(KeyId=key_id, Message=b"short", MessageType="DIGEST", SigningAlgorithm="ECDSA_SHA_256")
    assert err.value.response["Error"] == {"Code": "ValidationException",
                                           "Message": "Digest is invalid length for algorithm ECDSA_SHA_256."}
