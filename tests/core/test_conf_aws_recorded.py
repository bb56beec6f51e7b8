"""Behaviour AWS's recorded responses show (issue #11.5): RotateKeyOnDemand's KeyId,
OnDemandRotationStartDate only while a rotation is in progress, the on-demand limit's
message, reserved tag keys in any case, EXTERNAL keys' metadata without material, and
error bodies without ``message`` when AWS has none."""
from __future__ import annotations

import json
import os

import boto3
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from kms_core.server import wire
from kms_core.testing import mock_kms


@pytest.fixture
def kms(shared_store):
    return shared_store.client


def test_rotate_key_on_demand_returns_the_key_arn(kms, key):
    assert kms.rotate_key_on_demand(KeyId=key["KeyId"])["KeyId"] == key["Arn"]


def test_no_on_demand_rotation_in_progress_once_the_call_returned(kms, key):
    """Code that polls GetKeyRotationStatus until OnDemandRotationStartDate is gone
    (as AWS's own tests do) must not wait forever: ours completes within the call."""
    kms.rotate_key_on_demand(KeyId=key["KeyId"])
    status = kms.get_key_rotation_status(KeyId=key["KeyId"])
    assert "OnDemandRotationStartDate" not in status
    assert [r["RotationType"] for r in kms.list_key_rotations(KeyId=key["KeyId"])["Rotations"]] == ["ON_DEMAND"]


def test_on_demand_rotation_limit_message(raises, kms, key):
    for _ in range(25):
        kms.rotate_key_on_demand(KeyId=key["KeyId"])
    with raises("LimitExceededException",
                message="The on-demand rotations limit has been reached for the given keyId. "
                        f"No more on-demand rotations can be performed for this key: {key['Arn']}"):
        kms.rotate_key_on_demand(KeyId=key["KeyId"])


@pytest.mark.parametrize("tag_key", ["AWS:owner", "Aws:x", "aWs:", "aws:y"])
def test_reserved_tag_prefix_in_any_case(raises, kms, key, tag_key):
    with raises("TagException", message="Tags beginning with aws: are reserved"):
        kms.tag_resource(KeyId=key["KeyId"], Tags=[{"TagKey": tag_key, "TagValue": "v"}])
    with raises("TagException", message="Tags beginning with aws: are reserved"):
        kms.untag_resource(KeyId=key["KeyId"], TagKeys=[tag_key])
    with raises("TagException", message="Tags beginning with aws: are reserved"):
        kms.create_key(Tags=[{"TagKey": tag_key, "TagValue": "v"}])
    assert kms.list_resource_tags(KeyId=key["KeyId"])["Tags"] == []


def test_tag_keys_merely_containing_aws_are_fine(kms, key):
    kms.tag_resource(KeyId=key["KeyId"], Tags=[{"TagKey": "my-aws:x", "TagValue": "v"},
                                                {"TagKey": "awsx", "TagValue": "v"}])
    assert len(kms.list_resource_tags(KeyId=key["KeyId"])["Tags"]) == 2


@pytest.mark.parametrize("name", ["alias/a b", "alias/é", "alias/a.b", "alias/x\n", "alias/a*"])
def test_alias_names_only_with_aws_characters(raises, kms, key, name):
    with raises("ValidationException",
                message=f"1 validation error detected: Value '{name}' at 'aliasName' failed to satisfy "
                        "constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$"):
        kms.create_alias(AliasName=name, TargetKeyId=key["KeyId"])


def _import(kms, key_id: str) -> None:
    params = kms.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                           WrappingKeySpec="RSA_2048")
    pub = serialization.load_der_public_key(params["PublicKey"])
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    kms.import_key_material(KeyId=key_id, ImportToken=params["ImportToken"],
                            EncryptedKeyMaterial=pub.encrypt(os.urandom(32), oaep),  # type: ignore[union-attr]
                            ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")


def test_external_key_metadata_before_import_and_after_deleting_material(kms):
    """AWS's `create-key --origin EXTERNAL` answer: PendingImport, no ExpirationModel,
    no ValidTo, no CurrentKeyMaterialId; they appear with material and go with it."""
    md = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]
    kid = md["KeyId"]
    for m in (md, kms.describe_key(KeyId=kid)["KeyMetadata"]):
        assert m["KeyState"] == "PendingImport"
        assert not {"ExpirationModel", "ValidTo", "CurrentKeyMaterialId"} & set(m)
    _import(kms, kid)
    m = kms.describe_key(KeyId=kid)["KeyMetadata"]
    assert m["KeyState"] == "Enabled" and m["ExpirationModel"] == "KEY_MATERIAL_DOES_NOT_EXPIRE"
    assert len(m["CurrentKeyMaterialId"]) == 64 and "ValidTo" not in m
    kms.delete_imported_key_material(KeyId=kid)
    m = kms.describe_key(KeyId=kid)["KeyMetadata"]
    assert m["KeyState"] == "PendingImport"
    assert not {"ExpirationModel", "ValidTo", "CurrentKeyMaterialId"} & set(m)


def test_error_body_has_no_message_member_when_aws_has_none():
    assert json.loads(wire.encode_error("InvalidCiphertextException", "")) == {
        "__type": "InvalidCiphertextException"}
    assert json.loads(wire.encode_error("NotFoundException", "x")) == {"__type": "NotFoundException", "message": "x"}


def _error_of(call):
    with pytest.raises(Exception) as info:
        call()
    return info.value.response


def test_botocore_sees_no_message_member_for_an_empty_message(kms):
    """Through botocore's own parser (mock_kms answers over the wire format) and the
    in-process client alike: ``Error.Message`` is "" and there is no top-level ``message``,
    as with AWS's recorded InvalidCiphertextException; a message still comes through."""
    with mock_kms():
        real = boto3.client("kms", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
        kid = real.create_key()["KeyMetadata"]["KeyId"]
        blob = real.encrypt(KeyId=kid, Plaintext=b"x", EncryptionContext={"a": "b"})["CiphertextBlob"]
        wired = _error_of(lambda: real.decrypt(CiphertextBlob=blob))
        found = _error_of(lambda: real.describe_key(KeyId="alias/none"))
    kid = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=kid, Plaintext=b"x", EncryptionContext={"a": "b"})["CiphertextBlob"]
    local = _error_of(lambda: kms.decrypt(CiphertextBlob=blob))
    for resp in (wired, local):
        assert resp["Error"] == {"Code": "InvalidCiphertextException", "Message": ""}
        assert "message" not in resp
    assert found["Error"]["Message"] == found["message"] != ""
