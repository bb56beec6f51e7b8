"""Sign / Verify for every asymmetric spec and algorithm, checked by independent verifiers:
pyca/cryptography from the DER public key alone, and OpenSSL's command line (RSA, ECDSA,
Ed25519).  ML-DSA and Ed25519ph are checked in their own modules (OpenSSL 3.0 has neither)."""
from __future__ import annotations

import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from keytypes_helpers import openssl_verify

from kms_core import keytypes
from kms_core.errors import KMSError

HASHLIB = {"SHA_256": hashlib.sha256, "SHA_384": hashlib.sha384, "SHA_512": hashlib.sha512}
PYCA = {"SHA_256": hashes.SHA256, "SHA_384": hashes.SHA384, "SHA_512": hashes.SHA512}
MESSAGE = b"The quick brown fox jumps over the lazy dog"

CASES = [(spec, alg, mt)
         for spec in keytypes.specs() if spec.startswith(("RSA_", "ECC_")) and spec != "ECC_NIST_EDWARDS25519"
         for alg in keytypes.get(spec).signing_algorithms for mt in ("RAW", "DIGEST")]
CASES.append(("ECC_NIST_EDWARDS25519", "ED25519_SHA_512", "RAW"))


def _input(alg: str, mt: str) -> bytes:
    return HASHLIB[alg[-7:]](MESSAGE).digest() if mt == "DIGEST" else MESSAGE


def pyca_verify(spki: bytes, alg: str, mt: str, message: bytes, signature: bytes) -> bool:
    key = serialization.load_der_public_key(spki)
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
            return True
        h = PYCA[alg[-7:]]()
        chosen = utils.Prehashed(h) if mt == "DIGEST" else h
        if isinstance(key, rsa.RSAPublicKey):
            pad = (padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)
                   if "PSS" in alg else padding.PKCS1v15())
            key.verify(signature, message, pad, chosen)
        else:
            assert isinstance(key, ec.EllipticCurvePublicKey)
            key.verify(signature, message, ec.ECDSA(chosen))
    except InvalidSignature:
        return False
    return True


@pytest.mark.parametrize(("spec", "alg", "mt"), CASES)
def test_signature_verifies_independently(spec, alg, mt, materials, tmp_path):
    kt = keytypes.get(spec)
    m = materials[spec]
    message = _input(alg, mt)
    signature = kt.signer().sign(m, message, mt, alg)
    spki = kt.public_key_der(m)
    assert kt.signer().verify(m, message, mt, alg, signature)
    assert pyca_verify(spki, alg, mt, message, signature)
    assert openssl_verify(tmp_path, spki, alg, message, mt, signature)
    # The independent verifiers do reject: a different message fails both.
    other = bytes([message[0] ^ 1]) + message[1:]
    assert not pyca_verify(spki, alg, mt, other, signature)
    assert not openssl_verify(tmp_path, spki, alg, other, mt, signature)


@pytest.mark.parametrize(("spec", "alg"), [(s, a) for s, a, mt in CASES if mt == "DIGEST"])
def test_digest_and_raw_signatures_are_interchangeable(spec, alg, materials):
    """A DIGEST signature of H(m) verifies as RAW over m and the other way round (AWS: the
    message type need not match, only say whether the message is hashed)."""
    kt, m = keytypes.get(spec), materials[spec]
    digest = _input(alg, "DIGEST")
    assert kt.signer().verify(m, MESSAGE, "RAW", alg, kt.signer().sign(m, digest, "DIGEST", alg))
    assert kt.signer().verify(m, digest, "DIGEST", alg, kt.signer().sign(m, MESSAGE, "RAW", alg))


def test_pss_salt_is_digest_length(materials):
    """AWS's RSASSA_PSS uses a salt as long as the digest: a verifier demanding that exact
    length accepts, one demanding a zero-length salt refuses."""
    kt, m = keytypes.get("RSA_2048"), materials["RSA_2048"]
    sig = kt.signer().sign(m, MESSAGE, "RAW", "RSASSA_PSS_SHA_384")
    pub = serialization.load_der_public_key(kt.public_key_der(m))
    assert isinstance(pub, rsa.RSAPublicKey)
    pub.verify(sig, MESSAGE, padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48), hashes.SHA384())
    with pytest.raises(InvalidSignature):
        pub.verify(sig, MESSAGE, padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=0), hashes.SHA384())


@pytest.mark.parametrize(("spec", "alg"), [(s, a) for s, a, mt in CASES if mt == "DIGEST"])
@pytest.mark.parametrize("delta", [-1, 1])
def test_digest_of_wrong_length_is_aws_validation_error(spec, alg, delta, materials):
    kt, m = keytypes.get(spec), materials[spec]
    digest = _input(alg, "DIGEST")
    bad = digest[:delta] if delta < 0 else digest + b"\0"
    for call in (lambda: kt.signer().sign(m, bad, "DIGEST", alg),
                 lambda: kt.signer().verify(m, bad, "DIGEST", alg, b"\0" * 64)):
        with pytest.raises(KMSError) as err:
            call()
        assert (err.value.code, err.value.message) == ("ValidationException",
                                                       f"Digest is invalid length for algorithm {alg}.")


@pytest.mark.parametrize(("spec", "alg"), [
    ("ECC_NIST_P256", "ECDSA_SHA_384"), ("ECC_NIST_P384", "ECDSA_SHA_256"), ("ECC_SECG_P256K1", "ECDSA_SHA_512"),
    ("RSA_2048", "ECDSA_SHA_256"), ("ECC_NIST_P256", "RSASSA_PSS_SHA_256"), ("ECC_NIST_EDWARDS25519", "ECDSA_SHA_512"),
    ("ML_DSA_44", "ED25519_SHA_512"), ("RSA_3072", "ML_DSA_SHAKE_256"),
])
def test_algorithm_the_spec_lacks_is_invalid_key_usage(spec, alg, materials):
    kt, m = keytypes.get(spec), materials[spec]
    with pytest.raises(KMSError) as err:
        kt.signer().sign(m, MESSAGE, "RAW", alg)
    assert err.value.code == "InvalidKeyUsageException"
    assert err.value.message == f"Algorithm {alg} is incompatible with key spec {spec}."


@pytest.mark.parametrize("spec", ["RSA_2048", "ECC_NIST_P256", "ECC_SECG_P256K1"])
def test_external_mu_is_only_for_ml_dsa(spec, materials):
    kt, m = keytypes.get(spec), materials[spec]
    with pytest.raises(KMSError) as err:
        kt.signer().sign(m, b"\0" * 64, "EXTERNAL_MU", kt.signing_algorithms[0])
    assert err.value.code == "ValidationException"


@pytest.mark.parametrize(("alg", "mt"), [("ED25519_SHA_512", "DIGEST"), ("ED25519_PH_SHA_512", "RAW")])
def test_ed25519_message_type_must_match_algorithm(alg, mt, materials):
    kt, m = keytypes.get("ECC_NIST_EDWARDS25519"), materials["ECC_NIST_EDWARDS25519"]
    with pytest.raises(KMSError) as err:
        kt.signer().sign(m, b"\0" * 64, mt, alg)
    assert err.value.code == "ValidationException"
    assert err.value.message == f"Message type {mt} is incompatible with algorithm {alg}."


def test_signatures_are_der_ecdsa(materials):
    """AWS returns ECDSA signatures DER-encoded (ECDSA-Sig-Value), not r||s."""
    kt, m = keytypes.get("ECC_NIST_P521"), materials["ECC_NIST_P521"]
    sig = kt.signer().sign(m, MESSAGE, "RAW", "ECDSA_SHA_512")
    r, s = utils.decode_dss_signature(sig)
    assert utils.encode_dss_signature(r, s) == sig
