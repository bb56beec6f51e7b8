"""GetKeyLastUsage (issue #11.2): the last successful cryptographic operation on a key,
read from the audit trail; TrackingStartDate and KeyCreationDate as AWS documents them."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from kms_core.audit import AuditReader, attach


@pytest.fixture
def audited(engine, kms):
    log = attach(engine)
    yield kms
    log.close()


def _event(engine, event_id):
    for _seq, body in AuditReader(engine.store).events():
        ev = json.loads(body)
        if ev["eventID"] == event_id:
            return ev
    raise AssertionError(f"no event {event_id}")


def test_unused_key_has_no_last_usage(audited):
    md = audited.create_key()["KeyMetadata"]
    out = audited.get_key_last_usage(KeyId=md["KeyId"])
    assert out["KeyId"] == md["Arn"]
    assert "KeyLastUsage" not in out
    assert out["KeyCreationDate"] == md["CreationDate"]
    # Tracking began before the key existed: it starts at the key's creation.
    assert out["TrackingStartDate"] == md["CreationDate"]


def test_last_successful_crypto_operation_with_its_event(audited, engine, clock):
    kid = audited.create_key()["KeyMetadata"]["KeyId"]
    audited.create_alias(AliasName="alias/used", TargetKeyId=kid)
    blob = audited.encrypt(KeyId="alias/used", Plaintext=b"x")["CiphertextBlob"]
    clock.advance(seconds=30)
    resp = audited.decrypt(CiphertextBlob=blob)
    audited.describe_key(KeyId=kid)                     # not a cryptographic operation
    with pytest.raises(audited.exceptions.InvalidCiphertextException):
        audited.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})  # failed: not counted
    usage = audited.get_key_last_usage(KeyId=kid)["KeyLastUsage"]
    assert usage["Operation"] == "Decrypt"
    assert abs(usage["Timestamp"] - clock.now()) < timedelta(seconds=1)
    assert usage["KmsRequestId"] == resp["ResponseMetadata"]["RequestId"]
    ev = _event(engine, usage["CloudTrailEventId"])
    assert (ev["eventName"], ev["requestID"], ev.get("errorCode")) == ("Decrypt", usage["KmsRequestId"], None)


def test_reencrypt_counts_for_both_keys_and_sign_mac_for_theirs(audited):
    a, b = (audited.create_key()["KeyMetadata"]["KeyId"] for _ in range(2))
    blob = audited.encrypt(KeyId=a, Plaintext=b"x")["CiphertextBlob"]
    audited.re_encrypt(CiphertextBlob=blob, DestinationKeyId=b)
    assert audited.get_key_last_usage(KeyId=a)["KeyLastUsage"]["Operation"] == "ReEncrypt"
    assert audited.get_key_last_usage(KeyId=b)["KeyLastUsage"]["Operation"] == "ReEncrypt"
    sk = audited.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    audited.sign(KeyId=sk, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")
    audited.get_public_key(KeyId=sk)                    # not tracked by AWS
    assert audited.get_key_last_usage(KeyId=sk)["KeyLastUsage"]["Operation"] == "Sign"
    hk = audited.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
    audited.generate_mac(KeyId=hk, Message=b"m", MacAlgorithm="HMAC_SHA_256")
    assert audited.get_key_last_usage(KeyId=hk)["KeyLastUsage"]["Operation"] == "GenerateMac"


def test_tracking_starts_when_the_audit_log_began(engine, kms, clock):
    """A key created before the audit log was attached: tracking starts at its first event."""
    md = kms.create_key()["KeyMetadata"]
    kms.encrypt(KeyId=md["KeyId"], Plaintext=b"x")      # not recorded: no audit log yet
    out = kms.get_key_last_usage(KeyId=md["KeyId"])
    assert "KeyLastUsage" not in out and out["TrackingStartDate"] >= md["CreationDate"]
    clock.advance(days=2)
    log = attach(engine)
    try:
        kms.describe_key(KeyId=md["KeyId"])
        out = kms.get_key_last_usage(KeyId=md["KeyId"])
        assert "KeyLastUsage" not in out
        assert out["TrackingStartDate"] - md["CreationDate"] >= timedelta(days=2)
        assert out["KeyCreationDate"] == md["CreationDate"]
    finally:
        log.close()


def test_key_id_or_arn_only_and_unknown_keys(raises, audited):
    md = audited.create_key()["KeyMetadata"]
    audited.create_alias(AliasName="alias/lu", TargetKeyId=md["KeyId"])
    assert audited.get_key_last_usage(KeyId=md["Arn"])["KeyId"] == md["Arn"]
    with raises("NotFoundException"):
        audited.get_key_last_usage(KeyId="alias/lu")
    with raises("NotFoundException"):
        audited.get_key_last_usage(KeyId="1234abcd-12ab-34cd-56ef-1234567890ab")
