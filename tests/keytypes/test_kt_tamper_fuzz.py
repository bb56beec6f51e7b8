"""Tamper matrices (every flipped bit of a signature, MAC or ciphertext is refused) and
hypothesis fuzzing (round trips hold; bad input yields KMSError, never another exception)."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keytypes_helpers import material, second_material

from kms_core import keytypes
from kms_core.errors import KMSError
from kms_core.keytypes import spec_facts

SIGNING = [(s, a) for s in keytypes.specs() if keytypes.get(s).signer() for a in keytypes.get(s).signing_algorithms]
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _message_type(alg: str) -> str:
    return "DIGEST" if alg == "ED25519_PH_SHA_512" else "RAW"


def _message(alg: str) -> bytes:
    return b"\x42" * 64 if alg == "ED25519_PH_SHA_512" else b"tamper with me"


def _flips(data: bytes, limit: int = 48):
    """Single-bit flips spread over the whole value (first, last and evenly spaced bytes)."""
    positions = sorted({0, len(data) - 1, *range(0, len(data), max(1, len(data) // limit))})
    for i in positions:
        for bit in (0, 7):
            yield data[:i] + bytes([data[i] ^ (1 << bit)]) + data[i + 1:]


@pytest.mark.parametrize(("spec", "alg"), SIGNING)
def test_every_flipped_signature_bit_fails(spec, alg, materials):
    kt, m = keytypes.get(spec), materials[spec]
    mt, msg = _message_type(alg), _message(alg)
    sig = kt.signer().sign(m, msg, mt, alg)
    assert kt.signer().verify(m, msg, mt, alg, sig)
    for bad in (*_flips(sig), sig[:-1], sig + b"\0", b"", b"\0" * len(sig)):
        assert kt.signer().verify(m, msg, mt, alg, bad) is False
    for bad_msg in _flips(msg, 8):
        assert kt.signer().verify(m, bad_msg, mt, alg, sig) is False
    # Another key of the same spec does not verify it.
    assert kt.signer().verify(second_material(spec), msg, mt, alg, sig) is False


@pytest.mark.parametrize("bits", [224, 256, 384, 512])
def test_every_flipped_mac_bit_fails(bits):
    kt, m = keytypes.get(f"HMAC_{bits}"), material(f"HMAC_{bits}")
    alg = f"HMAC_SHA_{bits}"
    mac = kt.mac().generate_mac(m, b"message", alg)
    for bad in _flips(mac):
        assert kt.mac().verify_mac(m, b"message", alg, bad) is False
    assert kt.mac().verify_mac(material(f"HMAC_{bits}"), b"message", alg, mac) is False


@pytest.mark.parametrize("alg", ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"])
def test_every_flipped_ciphertext_bit_fails(alg, materials):
    kt, m = keytypes.get("RSA_2048"), materials["RSA_2048"]
    ct = kt.encrypter().encrypt(m, b"attack at dawn", alg, b"")
    for bad in (*_flips(ct, 24), ct[:-1], b"", b"\0" * len(ct)):
        with pytest.raises(KMSError) as err:
            kt.encrypter().decrypt(m, bad, alg, b"")
        assert err.value.code == "InvalidCiphertextException"


@pytest.mark.parametrize(("spec", "alg"), SIGNING)
def test_fuzz_sign_verify_round_trip(spec, alg, materials):
    kt, m = keytypes.get(spec), materials[spec]

    @FUZZ
    @given(st.binary(min_size=0, max_size=spec_facts.MAX_MESSAGE))
    def round_trip(data: bytes) -> None:
        mt = _message_type(alg)
        msg = (data * 64)[:64].ljust(64, b"\0") if mt == "DIGEST" else data
        assert kt.signer().verify(m, msg, mt, alg, kt.signer().sign(m, msg, mt, alg))

    round_trip()


ANY_ALGORITHM = st.sampled_from([*spec_facts.DIGEST_LENGTHS, "ML_DSA_SHAKE_256", "ED25519_SHA_512", "SM2DSA",
                                 "HMAC_SHA_256", "ECDH", "RSAES_OAEP_SHA_1", "SYMMETRIC_DEFAULT", "", "nope"])
ANY_MESSAGE_TYPE = st.sampled_from([*spec_facts.MESSAGE_TYPES, "", "raw", "BOGUS"])


@pytest.mark.parametrize("spec", [s for s in keytypes.specs() if keytypes.get(s).signer()])
def test_fuzz_bad_sign_verify_input_is_typed(spec, materials):
    kt, m = keytypes.get(spec), materials[spec]

    @FUZZ
    @given(st.binary(max_size=200), ANY_MESSAGE_TYPE, ANY_ALGORITHM, st.binary(max_size=600))
    def typed(msg: bytes, mt: str, alg: str, sig: bytes) -> None:
        try:
            kt.signer().sign(m, msg, mt, alg)
        except KMSError:
            pass
        try:
            assert kt.signer().verify(m, msg, mt, alg, sig) in (True, False)
        except KMSError:
            pass

    typed()


@pytest.mark.parametrize("spec", ["ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521"])
def test_fuzz_bad_peer_keys_are_typed(spec, materials):
    kt, m = keytypes.get(spec), materials[spec]

    @FUZZ
    @given(st.binary(max_size=300), st.sampled_from(["ECDH", "", "ecdh"]))
    def typed(peer: bytes, alg: str) -> None:
        with pytest.raises(KMSError):
            kt.key_agreement().derive_shared_secret(m, peer, alg)

    typed()


@pytest.mark.parametrize("spec", keytypes.specs())
def test_fuzz_bad_import_material_is_typed(spec):
    kt = keytypes.get(spec)

    @FUZZ
    @given(st.binary(max_size=300))
    def typed(secret: bytes) -> None:
        try:
            kt.check_import(secret)
        except KMSError as err:
            assert err.code in ("IncorrectKeyMaterialException", "ValidationException")
        except NotImplementedError:
            pytest.skip(f"{spec} does not take imported material")

    typed()


def test_fuzz_bad_ciphertexts_and_algorithms_are_typed(materials):
    kt, m = keytypes.get("RSA_3072"), materials["RSA_3072"]

    @FUZZ
    @given(st.binary(max_size=800), ANY_ALGORITHM)
    def typed(ct: bytes, alg: str) -> None:
        with pytest.raises(KMSError):
            kt.encrypter().decrypt(m, ct, alg, b"")

    typed()
