"""ML-DSA checked by an independent implementation (dilithium-py, pure Python FIPS 204) and
Ed25519ph by RFC 8032's known-answer vector.  OpenSSL 3.0 has neither."""
from __future__ import annotations

import hashlib
import sys

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa
from dilithium_py.ml_dsa import ML_DSA_44, ML_DSA_65, ML_DSA_87
from keytypes_helpers import material

from kms_core import keytypes
from kms_core.errors import KMSError
from kms_core.keytypes import ed25519 as kms_ed25519

INDEPENDENT = {"ML_DSA_44": ML_DSA_44, "ML_DSA_65": ML_DSA_65, "ML_DSA_87": ML_DSA_87}
PYCA = {"ML_DSA_44": mldsa.MLDSA44PrivateKey, "ML_DSA_65": mldsa.MLDSA65PrivateKey,
        "ML_DSA_87": mldsa.MLDSA87PrivateKey}
ALG = "ML_DSA_SHAKE_256"


def _raw_public(kt, m) -> bytes:
    pub = serialization.load_der_public_key(kt.public_key_der(m))
    return pub.public_bytes_raw()


@pytest.mark.parametrize("spec", list(INDEPENDENT))
def test_raw_signature_verifies_in_dilithium_py(spec, materials):
    kt, m = keytypes.get(spec), materials[spec]
    pk = _raw_public(kt, m)
    for message in (b"", b"hello", bytes(range(256)) * 16):
        sig = kt.signer().sign(m, message, "RAW", ALG)
        assert INDEPENDENT[spec].verify(pk, message, sig)
        assert not INDEPENDENT[spec].verify(pk, message + b"!", sig)
        assert kt.signer().verify(m, message, "RAW", ALG, sig)


@pytest.mark.parametrize("spec", list(INDEPENDENT))
def test_external_mu_matches_fips_204_mu(spec, materials):
    """mu = SHAKE256(SHAKE256(pk, 64) || 0 || 0 || M, 64) computed here with hashlib: a
    signature over that mu is a signature over M (dilithium-py), and KMS verifies it either way."""
    kt, m = keytypes.get(spec), materials[spec]
    pk = _raw_public(kt, m)
    message = b"sign me through external mu"
    tr = hashlib.shake_256(pk).digest(64)
    mu = hashlib.shake_256(tr + b"\x00\x00" + message).digest(64)
    assert mu == INDEPENDENT[spec].prehash_external_mu(pk, message)
    sig = kt.signer().sign(m, mu, "EXTERNAL_MU", ALG)
    assert INDEPENDENT[spec].verify(pk, message, sig)
    assert kt.signer().verify(m, message, "RAW", ALG, sig)
    assert kt.signer().verify(m, mu, "EXTERNAL_MU", ALG, kt.signer().sign(m, message, "RAW", ALG))


@pytest.mark.parametrize("spec", list(INDEPENDENT))
def test_key_generation_agrees_with_dilithium_py_from_the_same_seed(spec):
    """Import the 32-byte seed (PKCS#8, the form KMS stores): the public key KMS reports is
    the one FIPS 204's KeyGen derives, as computed by the independent implementation."""
    seed = hashlib.sha256(spec.encode()).digest()
    key = PYCA[spec].from_seed_bytes(seed)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    kt = keytypes.get(spec)
    m = material(spec, kt.check_import(der))
    pk, sk = INDEPENDENT[spec].key_derive(seed)
    assert _raw_public(kt, m) == pk
    sig = INDEPENDENT[spec].sign(sk, b"from dilithium-py")
    assert kt.signer().verify(m, b"from dilithium-py", "RAW", ALG, sig)


@pytest.mark.parametrize("bad_length", [0, 32, 63, 65])
def test_external_mu_must_be_64_bytes(bad_length, materials):
    kt, m = keytypes.get("ML_DSA_44"), materials["ML_DSA_44"]
    with pytest.raises(KMSError) as err:
        kt.signer().sign(m, b"\0" * bad_length, "EXTERNAL_MU", ALG)
    assert err.value.code == "ValidationException"


def test_digest_is_not_an_ml_dsa_message_type(materials):
    kt, m = keytypes.get("ML_DSA_65"), materials["ML_DSA_65"]
    with pytest.raises(KMSError) as err:
        kt.signer().sign(m, b"\0" * 64, "DIGEST", ALG)
    assert err.value.code == "ValidationException"


def test_import_of_another_ml_dsa_parameter_set_is_refused():
    der = material("ML_DSA_44").secret
    with pytest.raises(KMSError) as err:
        keytypes.get("ML_DSA_65").check_import(der)
    assert err.value.code == "IncorrectKeyMaterialException"


# RFC 8032 section 7.3, test "abc" (Ed25519ph).
RFC8032_SECRET = bytes.fromhex("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42")
RFC8032_PUBLIC = bytes.fromhex("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf")
RFC8032_SIGNATURE = bytes.fromhex(
    "98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae41"
    "31f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406")


def _rfc8032_material():
    key = ed25519.Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    kt = keytypes.get("ECC_NIST_EDWARDS25519")
    return kt, material(kt.key_spec, kt.check_import(der))


def test_ed25519ph_primitive_reproduces_rfc_8032_vector():
    kt, m = _rfc8032_material()
    assert serialization.load_der_public_key(kt.public_key_der(m)).public_bytes_raw() == RFC8032_PUBLIC
    signer, sha512 = kms_ed25519._ed25519ph(m.secret)
    assert signer.sign(sha512.new(b"abc")) == RFC8032_SIGNATURE


def test_ed25519ph_signs_the_given_digest_with_a_second_sha512():
    """AWS: with ED25519_PH_SHA_512 + DIGEST "the input is hashed twice".  Signing the 64
    bytes D through KMS must equal RFC 8032 Ed25519ph over the message D (deterministic)."""
    kt, m = _rfc8032_material()
    digest = hashlib.sha512(b"abc").digest()
    sig = kt.signer().sign(m, digest, "DIGEST", "ED25519_PH_SHA_512")
    signer, sha512 = kms_ed25519._ed25519ph(m.secret)
    assert sig == signer.sign(sha512.new(digest))
    assert sig != RFC8032_SIGNATURE  # not single-hashed
    assert kt.signer().verify(m, digest, "DIGEST", "ED25519_PH_SHA_512", sig)
    # Not a pure Ed25519 signature over anything obvious.
    pub = ed25519.Ed25519PublicKey.from_public_bytes(RFC8032_PUBLIC)
    for candidate in (digest, hashlib.sha512(digest).digest()):
        with pytest.raises(InvalidSignature):
            pub.verify(sig, candidate)


def test_pure_ed25519_reproduces_rfc_8032_test_1():
    """RFC 8032 section 7.1 TEST 1 (empty message): pure Ed25519 through the KMS signer."""
    secret = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    expected = bytes.fromhex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
                             "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
    key = ed25519.Ed25519PrivateKey.from_private_bytes(secret)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    kt = keytypes.get("ECC_NIST_EDWARDS25519")
    assert kt.signer().sign(material(kt.key_spec, der), b"", "RAW", "ED25519_SHA_512") == expected


def test_ed25519ph_without_pycryptodome_is_unsupported_not_a_crash(monkeypatch, materials):
    for name in ("Crypto", "Crypto.Hash", "Crypto.PublicKey", "Crypto.Signature"):
        monkeypatch.setitem(sys.modules, name, None)  # import of it raises ImportError
    kt, m = keytypes.get("ECC_NIST_EDWARDS25519"), materials["ECC_NIST_EDWARDS25519"]
    with pytest.raises(KMSError) as err:
        kt.signer().sign(m, b"\0" * 64, "DIGEST", "ED25519_PH_SHA_512")
    assert err.value.code == "UnsupportedOperationException"
    pure = kt.signer().sign(m, b"pure", "RAW", "ED25519_SHA_512")
    assert kt.signer().verify(m, b"pure", "RAW", "ED25519_SHA_512", pure)
