"""Event shape: CloudTrail's fields for each kind of request, one event per call."""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError

from kms_core.audit import AuditReader, build_event
from kms_core.engine import RequestContext
from kms_core.errors import KMSError

from .conftest import ACCOUNT, ALICE, BOB, stored

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
REQUIRED = {"eventVersion", "userIdentity", "eventTime", "eventSource", "eventName", "awsRegion",
            "sourceIPAddress", "userAgent", "requestParameters", "responseElements", "requestID",
            "eventID", "readOnly", "resources", "eventType", "managementEvent", "eventCategory",
            "recipientAccountId"}


def test_encrypt_event_matches_cloudtrail(make_client, audit, clock):
    kms = make_client(principal=ALICE)
    key = kms.create_key(Description="app")["KeyMetadata"]
    kms.create_alias(AliasName="alias/app", TargetKeyId=key["KeyId"])
    kms.encrypt(KeyId="alias/app", Plaintext=b"hello world 1234",
                EncryptionContext={"Department": "Engineering"})
    ev = stored(audit)[-1]
    assert set(ev) >= REQUIRED
    assert ev["eventVersion"] == "1.11"
    assert ev["userIdentity"]["type"] == "IAMUser"
    assert ev["userIdentity"]["arn"] == ALICE
    assert ev["userIdentity"]["userName"] == "alice"
    assert ev["userIdentity"]["accountId"] == ACCOUNT
    assert ev["userIdentity"]["principalId"].startswith("AIDA")
    assert ev["eventTime"] == clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ev["eventSource"] == "kms.amazonaws.com"
    assert ev["eventName"] == "Encrypt"
    assert ev["awsRegion"] == "us-east-1"
    assert ev["requestParameters"] == {"keyId": "alias/app",
                                       "encryptionContext": {"Department": "Engineering"},
                                       "encryptionAlgorithm": "SYMMETRIC_DEFAULT"}
    assert ev["responseElements"] is None
    assert ev["readOnly"] is True
    assert ev["resources"] == [{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": key["Arn"]}]
    assert ev["eventType"] == "AwsApiCall" and ev["managementEvent"] is True
    assert ev["eventCategory"] == "Management" and ev["recipientAccountId"] == ACCOUNT
    assert "errorCode" not in ev and "errorMessage" not in ev
    assert UUID.match(ev["eventID"]) and UUID.match(ev["requestID"])
    assert ev["eventID"] != ev["requestID"]


def test_create_key_records_key_metadata(akms, audit):
    md = akms.create_key(Description="d", Tags=[{"TagKey": "team", "TagValue": "core"}])["KeyMetadata"]
    ev = stored(audit)[-1]
    assert ev["eventName"] == "CreateKey" and ev["readOnly"] is False
    assert ev["userIdentity"] == {"type": "Root", "principalId": ACCOUNT,
                                  "arn": f"arn:aws:iam::{ACCOUNT}:root", "accountId": ACCOUNT}
    assert ev["requestParameters"]["description"] == "d"
    assert ev["requestParameters"]["tags"] == [{"tagKey": "team", "tagValue": "core"}]
    km = ev["responseElements"]["keyMetadata"]
    assert km["AWSAccountId"] == ACCOUNT and km["keyId"] == md["KeyId"] and km["arn"] == md["Arn"]
    assert km["keyState"] == "Enabled" and km["keyUsage"] == "ENCRYPT_DECRYPT"
    # CloudTrail's own timestamp form inside responseElements
    assert re.match(r"^[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{1,2}:\d{2}:\d{2} [AP]M$", km["creationDate"])
    assert ev["resources"][0]["ARN"] == md["Arn"]


def test_every_call_is_recorded_once_in_order(akms, audit):
    expected: list[tuple[str, str | None]] = []

    def call(name, **kw):
        method = getattr(akms, re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower())
        try:
            out = method(**kw)
            expected.append((name, None))
            return out
        except ClientError as e:
            expected.append((name, e.response["Error"]["Code"]))
            return None

    key = call("CreateKey")["KeyMetadata"]["KeyId"]
    call("CreateAlias", AliasName="alias/once", TargetKeyId=key)
    blob = call("Encrypt", KeyId="alias/once", Plaintext=b"x" * 20)["CiphertextBlob"]
    call("Decrypt", CiphertextBlob=blob)
    call("Decrypt", CiphertextBlob=blob, EncryptionContext={"a": "b"})      # InvalidCiphertext
    call("GenerateDataKey", KeyId=key, KeySpec="AES_256")
    call("GenerateDataKeyWithoutPlaintext", KeyId=key, NumberOfBytes=16)
    call("ReEncrypt", CiphertextBlob=blob, DestinationKeyId=key)
    call("GenerateRandom", NumberOfBytes=8)
    call("DescribeKey", KeyId="alias/once")
    call("ListKeys")
    call("DisableKey", KeyId=key)
    call("Encrypt", KeyId=key, Plaintext=b"y" * 20)                          # DisabledException
    call("EnableKey", KeyId=key)
    call("DescribeKey", KeyId="alias/nope")                                   # NotFound
    call("DisableKey", KeyId="00000000-0000-4000-8000-000000000000")          # NotFound
    call("ScheduleKeyDeletion", KeyId=key, PendingWindowInDays=7)
    call("CancelKeyDeletion", KeyId=key)
    events = stored(audit)
    assert [(e["eventName"], e.get("errorCode")) for e in events] == expected
    assert len({e["eventID"] for e in events}) == len(events)
    assert any(code for _, code in expected) and len(expected) == 18


def test_failed_call_names_key_from_parameters(akms, audit):
    missing = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(ClientError):
        akms.disable_key(KeyId=missing)
    ev = stored(audit)[-1]
    assert ev["errorCode"] == "NotFoundException"
    assert missing in ev["errorMessage"]
    assert ev["responseElements"] is None
    assert ev["resources"] == [{"accountId": ACCOUNT, "type": "AWS::KMS::Key",
                                "ARN": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{missing}"}]


def test_reencrypt_names_both_keys(akms, audit):
    k1 = akms.create_key()["KeyMetadata"]["Arn"]
    k2 = akms.create_key()["KeyMetadata"]["Arn"]
    blob = akms.encrypt(KeyId=k1, Plaintext=b"p" * 16)["CiphertextBlob"]
    akms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=k2,
                    DestinationEncryptionContext={"to": "k2"})
    ev = stored(audit)[-1]
    assert ev["eventName"] == "ReEncrypt"
    assert {r["ARN"] for r in ev["resources"]} == {k1, k2}
    assert ev["requestParameters"]["destinationEncryptionContext"] == {"to": "k2"}
    assert "ciphertextBlob" not in ev["requestParameters"]


def test_access_denied_is_recorded_with_the_caller(make_client, audit):
    admin = make_client()
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ALICE}, "Action": "kms:*", "Resource": "*"}]})
    key = admin.create_key(Policy=policy, BypassPolicyLockoutSafetyCheck=True)["KeyMetadata"]
    bob = make_client(principal=BOB)
    with pytest.raises(ClientError) as e:
        bob.encrypt(KeyId=key["KeyId"], Plaintext=b"not for bob!!")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    ev = stored(audit)[-1]
    assert ev["eventName"] == "Encrypt" and ev["errorCode"] == "AccessDeniedException"
    assert ev["userIdentity"]["userName"] == "bob"
    assert ev["resources"][0]["ARN"] == key["Arn"]
    # the policy document itself is recorded for CreateKey, as CloudTrail does
    create = [x for x in stored(audit) if x["eventName"] == "CreateKey"][-1]
    assert json.loads(create["requestParameters"]["policy"]) == json.loads(policy)


def test_rejected_before_dispatch_is_recorded(engine, audit):
    ctx = RequestContext(region="eu-west-1", account_id=ACCOUNT, principal=None,
                         source_ip="198.51.100.7", user_agent="Boto3/1.43.11",
                         request_id="0f0e0d0c-0b0a-4909-8807-060504030201",
                         access_key_id="AKIAFORGEDFORGED0001", authenticated=False)
    engine.record_rejected(ctx, "Encrypt", KMSError("InvalidSignatureException", "The request "
                           "signature we calculated does not match the signature you provided."))
    engine.record_rejected(ctx, None, KMSError("UnknownOperationException", "Missing X-Amz-Target header"))
    a, b = stored(audit)[-2:]
    assert a["eventName"] == "Encrypt" and a["errorCode"] == "InvalidSignatureException"
    assert a["userIdentity"] == {"type": "Unknown", "accessKeyId": "AKIAFORGEDFORGED0001"}
    assert a["sourceIPAddress"] == "198.51.100.7" and a["userAgent"] == "Boto3/1.43.11"
    assert a["requestID"] == "0f0e0d0c-0b0a-4909-8807-060504030201"
    assert a["awsRegion"] == "eu-west-1" and a["requestParameters"] is None
    assert b["eventName"] == "Unknown" and b["errorCode"] == "UnknownOperationException"


def test_claimed_but_unproven_identity_is_marked(engine, audit):
    ctx = RequestContext(account_id=ACCOUNT, principal=ALICE, access_key_id="AKIAALICEALICE000001",
                         authenticated=False)
    engine.record_rejected(ctx, "Decrypt", KMSError("IncompleteSignatureException", "bad"))
    ev = stored(audit)[-1]
    assert ev["userIdentity"]["authenticated"] is False and ev["userIdentity"]["arn"] == ALICE


def test_validation_errors_are_recorded(engine, akms, audit):
    key = akms.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(KMSError) as e:
        engine.call("GenerateDataKey", {"KeyId": key, "NumberOfBytes": 2000})
    assert e.value.code == "ValidationException"
    assert stored(audit)[-1].get("errorCode") == "ValidationException"


def test_event_time_follows_the_engine_clock(akms, audit, clock):
    clock.set(datetime(2030, 6, 1, 8, 30, 15, tzinfo=UTC))
    akms.list_keys()
    clock.advance(days=1)
    akms.list_keys()
    a, b = stored(audit)[-2:]
    assert a["eventTime"] == "2030-06-01T08:30:15Z" and b["eventTime"] == "2030-06-02T08:30:15Z"
    assert a["responseElements"] is None and a["readOnly"] is True


def test_later_mutation_of_request_or_response_does_not_change_the_event(akms, audit):
    context = {"k": "v"}
    key = akms.create_key()
    key["KeyMetadata"]["Description"] = "changed after the call"
    akms.encrypt(KeyId=key["KeyMetadata"]["KeyId"], Plaintext=b"0123456789abcdef",
                 EncryptionContext=context)
    context["k"] = "mutated"
    events = stored(audit)
    assert events[-1]["requestParameters"]["encryptionContext"] == {"k": "v"}
    assert events[-2]["responseElements"]["keyMetadata"]["description"] == ""


def test_build_event_with_odd_input_still_gives_an_event():
    ev = build_event(None, "Not an op!", {"KeyId": object(), "X": [b"\x00", {"Y": 1}]},
                     {"weird": object()}, KMSError("KMSInternalException", "boom"),
                     datetime(2026, 1, 1, tzinfo=UTC), account_id=ACCOUNT,
                     region="us-east-1")
    assert ev["eventName"] == "Unknown" and ev["errorCode"] == "KMSInternalException"
    assert ev["requestParameters"] == {"x": [{"y": 1}]}


def test_close_detaches_and_attach_is_idempotent(engine, make_client):
    from kms_core.audit import attach
    log = attach(engine)
    assert attach(engine) is log and engine.auditor is log
    kms = make_client()
    kms.list_keys()
    log.close()
    assert engine.auditor is None
    kms.list_keys()
    assert len(AuditReader(engine.store).events()) == 1
