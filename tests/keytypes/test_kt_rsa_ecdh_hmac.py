"""RSA-OAEP (both directions with OpenSSL), ECDH (against the peer's own computation and
OpenSSL's), HMAC (against Python's hmac module), imported material checks."""
from __future__ import annotations

import hashlib
import hmac as std_hmac
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from keytypes_helpers import material, openssl_derive, openssl_oaep_decrypt, openssl_oaep_encrypt

from kms_core import keytypes
from kms_core.errors import KMSError

RSA_SPECS = ("RSA_2048", "RSA_3072", "RSA_4096")
OAEP = ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256")
# AWS's Encrypt documentation.
AWS_LIMITS = {("RSA_2048", "RSAES_OAEP_SHA_1"): 214, ("RSA_2048", "RSAES_OAEP_SHA_256"): 190,
              ("RSA_3072", "RSAES_OAEP_SHA_1"): 342, ("RSA_3072", "RSAES_OAEP_SHA_256"): 318,
              ("RSA_4096", "RSAES_OAEP_SHA_1"): 470, ("RSA_4096", "RSAES_OAEP_SHA_256"): 446}
CURVES = {"ECC_NIST_P256": ec.SECP256R1, "ECC_NIST_P384": ec.SECP384R1, "ECC_NIST_P521": ec.SECP521R1}


def _spki(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("spec", RSA_SPECS)
@pytest.mark.parametrize("alg", OAEP)
def test_openssl_ciphertext_decrypts_and_ours_decrypts_in_openssl(spec, alg, materials, tmp_path):
    kt, m = keytypes.get(spec), materials[spec]
    limit = AWS_LIMITS[(spec, alg)]
    plaintext = os.urandom(limit)  # the largest AWS accepts
    theirs = openssl_oaep_encrypt(tmp_path, kt.public_key_der(m), alg, plaintext)
    assert kt.encrypter().decrypt(m, theirs, alg, b"") == plaintext
    ours = kt.encrypter().encrypt(m, plaintext, alg, b"")
    assert openssl_oaep_decrypt(tmp_path, m.secret, alg, ours) == plaintext
    assert ours != kt.encrypter().encrypt(m, plaintext, alg, b"")  # OAEP is randomized


@pytest.mark.parametrize(("spec", "alg"), list(AWS_LIMITS))
def test_plaintext_limit_is_aws_figure_with_aws_message(spec, alg, materials):
    kt, m = keytypes.get(spec), materials[spec]
    limit = AWS_LIMITS[(spec, alg)]
    with pytest.raises(KMSError) as err:
        kt.encrypter().encrypt(m, b"x" * (limit + 1), alg, b"")
    assert (err.value.code, err.value.message) == (
        "ValidationException", f"Algorithm {alg} and key spec {spec} cannot encrypt data larger than {limit} bytes.")


def test_wrong_oaep_hash_or_key_is_invalid_ciphertext(materials):
    kt, m = keytypes.get("RSA_2048"), materials["RSA_2048"]
    ct = kt.encrypter().encrypt(m, b"secret", "RSAES_OAEP_SHA_256", b"")
    with pytest.raises(KMSError) as err:
        kt.encrypter().decrypt(m, ct, "RSAES_OAEP_SHA_1", b"")
    assert (err.value.code, err.value.message) == ("InvalidCiphertextException", "")
    with pytest.raises(KMSError) as err:
        kt.encrypter().decrypt(material("RSA_2048"), ct, "RSAES_OAEP_SHA_256", b"")
    assert err.value.code == "InvalidCiphertextException"
    with pytest.raises(KMSError) as err:
        kt.encrypter().decrypt(m, ct + b"\0", "RSAES_OAEP_SHA_256", b"")
    assert err.value.code == "InvalidCiphertextException"


def test_encryption_algorithm_must_be_oaep(materials):
    kt, m = keytypes.get("RSA_2048"), materials["RSA_2048"]
    with pytest.raises(KMSError) as err:
        kt.encrypter().encrypt(m, b"x", "SYMMETRIC_DEFAULT", b"")
    assert (err.value.code, err.value.message) == (
        "InvalidKeyUsageException", "Algorithm SYMMETRIC_DEFAULT is incompatible with key spec RSA_2048.")


@pytest.mark.parametrize("spec", list(CURVES))
def test_ecdh_secret_equals_the_peers_and_openssls(spec, materials, tmp_path):
    kt, m = keytypes.get(spec), materials[spec]
    peer = ec.generate_private_key(CURVES[spec]())
    secret = kt.key_agreement().derive_shared_secret(m, _spki(peer), "ECDH")
    kms_public = serialization.load_der_public_key(kt.public_key_der(m))
    assert isinstance(kms_public, ec.EllipticCurvePublicKey)
    assert secret == peer.exchange(ec.ECDH(), kms_public)
    assert secret == openssl_derive(tmp_path, m.secret, _spki(peer))
    assert len(secret) == (CURVES[spec].key_size + 7) // 8  # the raw x coordinate, no KDF


@pytest.mark.parametrize("spec", list(CURVES))
def test_ecdh_peer_key_on_another_curve_or_not_ec_is_validation_error(spec, materials):
    kt, m = keytypes.get(spec), materials[spec]
    others = [ec.generate_private_key(c()) for s, c in CURVES.items() if s != spec]
    others += [ec.generate_private_key(ec.SECP256K1()), ed25519.Ed25519PrivateKey.generate(),
               rsa.generate_private_key(public_exponent=65537, key_size=1024)]
    for other in others:
        with pytest.raises(KMSError) as err:
            kt.key_agreement().derive_shared_secret(m, _spki(other), "ECDH")
        assert err.value.code == "ValidationException"
    for garbage in (b"", b"\x30\x03\x02\x01\x00", os.urandom(91), _spki(others[0])[:-1]):
        with pytest.raises(KMSError) as err:
            kt.key_agreement().derive_shared_secret(m, garbage, "ECDH")
        assert err.value.code == "ValidationException"


def test_ecdh_algorithm_and_secp256k1_has_no_key_agreement(materials):
    kt, m = keytypes.get("ECC_NIST_P256"), materials["ECC_NIST_P256"]
    peer = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(KMSError) as err:
        kt.key_agreement().derive_shared_secret(m, _spki(peer), "ECDH_COFACTOR")
    assert err.value.code == "InvalidKeyUsageException"
    assert keytypes.get("ECC_SECG_P256K1").key_agreement() is None
    assert keytypes.get("ECC_NIST_EDWARDS25519").key_agreement() is None


@pytest.mark.parametrize(("bits", "low", "high"), [(224, 28, 64), (256, 32, 64), (384, 48, 128), (512, 64, 128)])
def test_hmac_equals_python_hmac_over_imported_material(bits, low, high):
    kt = keytypes.get(f"HMAC_{bits}")
    alg = f"HMAC_SHA_{bits}"
    digestmod = getattr(hashlib, f"sha{bits}")
    assert len(kt.generate()) == bits // 8
    for length in (low, (low + high) // 2, high):
        secret = kt.check_import(os.urandom(length))
        m = material(kt.key_spec, secret)
        for message in (b"", b"a", os.urandom(4096)):
            mac = kt.mac().generate_mac(m, message, alg)
            assert mac == std_hmac.new(secret, message, digestmod).digest()
            assert kt.mac().verify_mac(m, message, alg, mac)
    for length in (low - 1, high + 1, 0):
        with pytest.raises(KMSError) as err:
            kt.check_import(os.urandom(length))
        assert err.value.code == "IncorrectKeyMaterialException"


def test_hmac_algorithm_of_another_spec_is_aws_message():
    kt = keytypes.get("HMAC_224")
    with pytest.raises(KMSError) as err:
        kt.mac().generate_mac(material("HMAC_224"), b"m", "HMAC_SHA_256")
    assert (err.value.code, err.value.message) == (
        "InvalidKeyUsageException", "Algorithm HMAC_SHA_256 is incompatible with key spec HMAC_224.")


def test_hmac_verify_rejects_truncated_and_extended_macs():
    kt, m = keytypes.get("HMAC_256"), material("HMAC_256")
    mac = kt.mac().generate_mac(m, b"m", "HMAC_SHA_256")
    for bad in (mac[:-1], mac + b"\0", b"", mac[:16]):
        assert not kt.mac().verify_mac(m, b"m", "HMAC_SHA_256", bad)


def _pkcs8(key) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.mark.parametrize(("spec", "right", "wrong"), [
    ("ECC_NIST_P256", lambda: ec.generate_private_key(ec.SECP256R1()), lambda: ec.generate_private_key(ec.SECP384R1())),
    ("ECC_SECG_P256K1", lambda: ec.generate_private_key(ec.SECP256K1()),
     lambda: ec.generate_private_key(ec.SECP256R1())),
    ("ECC_NIST_EDWARDS25519", ed25519.Ed25519PrivateKey.generate, lambda: ec.generate_private_key(ec.SECP256R1())),
    ("RSA_2048", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
     lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024)),
])
def test_import_accepts_pkcs8_of_the_spec_only(spec, right, wrong):
    kt = keytypes.get(spec)
    key = right()
    secret = kt.check_import(_pkcs8(key))
    assert kt.public_key_der(material(spec, secret)) == _spki(key)
    for bad in (_pkcs8(wrong()), b"", b"not a key", _pkcs8(key)[:-3],
                key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())):
        with pytest.raises(KMSError) as err:
            kt.check_import(bad)
        assert err.value.code == "IncorrectKeyMaterialException"
