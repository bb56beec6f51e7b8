"""AWS's per-spec facts: checked against botocore's service model (enums, examples) and
AWS's documented figures."""
from __future__ import annotations

import botocore.session
import pytest

from kms_core import keytypes
from kms_core.errors import KMSError
from kms_core.keytypes import spec_facts

MODEL = botocore.session.get_session().get_service_model("kms")


def _enum(shape: str) -> list[str]:
    return list(MODEL.shape_for(shape).enum)


def test_every_model_key_spec_is_described_and_every_other_has_a_key_type():
    assert set(spec_facts.SPECS) == set(_enum("KeySpec"))
    implemented = set(keytypes.specs())
    # SM2 (China Regions only) has no pyca/cryptography implementation; SYMMETRIC_DEFAULT
    # belongs to the symmetric module.
    assert set(_enum("KeySpec")) - implemented <= {"SM2", "SYMMETRIC_DEFAULT"}


def test_algorithm_names_come_from_the_model_enums():
    enums = {"encryption_algorithms": "EncryptionAlgorithmSpec", "signing_algorithms": "SigningAlgorithmSpec",
             "mac_algorithms": "MacAlgorithmSpec", "key_agreement_algorithms": "KeyAgreementAlgorithmSpec"}
    for f in spec_facts.SPECS.values():
        assert set(f.key_usages) <= set(_enum("KeyUsageType"))
        for attr, shape in enums.items():
            assert set(getattr(f, attr)) <= set(_enum(shape)), (f.key_spec, attr)
    assert set(spec_facts.DATA_KEY_PAIR_SPECS) == set(_enum("DataKeyPairSpec"))
    assert set(spec_facts.MESSAGE_TYPES) == set(_enum("MessageType"))


def test_key_types_report_the_facts():
    for spec in keytypes.specs():
        kt, f = keytypes.get(spec), spec_facts.facts(spec)
        assert (kt.key_usages, kt.encryption_algorithms, kt.signing_algorithms, kt.mac_algorithms,
                kt.key_agreement_algorithms) == (f.key_usages, f.encryption_algorithms, f.signing_algorithms,
                                                 f.mac_algorithms, f.key_agreement_algorithms), spec


def _example_metadata(operation: str, spec: str) -> dict:
    loader = botocore.session.get_session().get_component("data_loader")
    examples = loader.load_service_model("kms", "examples-1")["examples"][operation]
    for ex in examples:
        meta = ex.get("output", {}).get("KeyMetadata", {})
        if meta.get("KeySpec", meta.get("CustomerMasterKeySpec")) == spec:
            return meta
    raise AssertionError(f"no {operation} example for {spec}")


@pytest.mark.parametrize(("operation", "spec"), [("CreateKey", "RSA_4096"), ("CreateKey", "ECC_NIST_P521"),
                                                 ("CreateKey", "HMAC_384"), ("DescribeKey", "RSA_2048"),
                                                 ("DescribeKey", "HMAC_256")])
def test_algorithm_lists_match_aws_examples(operation, spec):
    meta = _example_metadata(operation, spec)
    got = spec_facts.facts(spec).algorithms(meta["KeyUsage"])
    fields = ("EncryptionAlgorithms", "SigningAlgorithms", "MacAlgorithms", "KeyAgreementAlgorithms")
    assert got == {k: meta[k] for k in fields if k in meta}


@pytest.mark.parametrize(("spec", "allowed"), [
    ("SYMMETRIC_DEFAULT", {"ENCRYPT_DECRYPT"}),
    ("RSA_2048", {"ENCRYPT_DECRYPT", "SIGN_VERIFY"}), ("RSA_4096", {"ENCRYPT_DECRYPT", "SIGN_VERIFY"}),
    ("ECC_NIST_P256", {"SIGN_VERIFY", "KEY_AGREEMENT"}), ("ECC_NIST_P521", {"SIGN_VERIFY", "KEY_AGREEMENT"}),
    ("ECC_SECG_P256K1", {"SIGN_VERIFY"}), ("ECC_NIST_EDWARDS25519", {"SIGN_VERIFY"}),
    ("ML_DSA_65", {"SIGN_VERIFY"}), ("HMAC_512", {"GENERATE_VERIFY_MAC"}),
    ("SM2", {"ENCRYPT_DECRYPT", "SIGN_VERIFY", "KEY_AGREEMENT"}),
])
def test_key_usage_rules(spec, allowed):
    for usage in _enum("KeyUsageType"):
        if usage in allowed:
            assert spec_facts.check_key_usage(spec, usage) == usage
        else:
            with pytest.raises(KMSError) as err:
                spec_facts.check_key_usage(spec, usage)
            assert (err.value.code, err.value.message) == (
                "ValidationException", f"KeyUsage {usage} is not compatible with KeySpec {spec}")


def test_key_usage_default_only_for_symmetric():
    assert spec_facts.check_key_usage("SYMMETRIC_DEFAULT", None) == "ENCRYPT_DECRYPT"
    for spec in ("RSA_2048", "HMAC_256", "ECC_NIST_P256"):
        with pytest.raises(KMSError) as err:
            spec_facts.check_key_usage(spec, None)
        assert err.value.message == ("You must specify a KeyUsage value for all KMS keys except for symmetric "
                                     "encryption keys.")


def test_sm2_only_in_china_regions():
    spec_facts.check_region("SM2", "cn-north-1")
    spec_facts.check_region("RSA_2048", "us-east-1")
    with pytest.raises(KMSError) as err:
        spec_facts.check_region("SM2", "us-east-1")
    assert (err.value.code, err.value.message) == ("UnsupportedOperationException",
                                                   "KeySpec SM2 is not supported in this Region")


def test_unknown_spec_is_validation_error():
    with pytest.raises(KMSError) as err:
        spec_facts.facts("RSA_1024")
    assert err.value.code == "ValidationException"


def test_rotation_only_symmetric_and_everything_importable():
    assert [s for s, f in spec_facts.SPECS.items() if f.rotation] == ["SYMMETRIC_DEFAULT"]
    assert all(f.importable and f.multi_region for f in spec_facts.SPECS.values())


def test_rsa_plaintext_limits_are_aws_figures():
    got = {(b, a): spec_facts.rsa_max_plaintext(b, a) for b in (2048, 3072, 4096)
           for a in ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256")}
    assert got == {(2048, "RSAES_OAEP_SHA_1"): 214, (2048, "RSAES_OAEP_SHA_256"): 190,
                   (3072, "RSAES_OAEP_SHA_1"): 342, (3072, "RSAES_OAEP_SHA_256"): 318,
                   (4096, "RSAES_OAEP_SHA_1"): 470, (4096, "RSAES_OAEP_SHA_256"): 446}
