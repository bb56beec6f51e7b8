"""Multi-Region keys (issue #11 part 3): CreateKey MultiRegion, ReplicateKey, UpdatePrimaryRegion,
what is shared and what is per Region, cross-Region Decrypt, PendingReplicaDeletion, AWS's
errors; on SQLite and PostgreSQL, through the in-process client.  The server (boto3) and CLI
tests are at the end; the schema migration from a version-1 store too."""
from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

import kms_core
from kms_core import blob as blobfmt

US, EU, AP = "us-east-1", "eu-west-1", "ap-southeast-2"


@pytest.fixture(params=["sqlite", "postgresql"])
def eng(request, make_engine, kms_home):
    if request.param == "sqlite":
        yield make_engine(store_url=f"sqlite:///{kms_home}/mrk.db")
    else:
        url = request.getfixturevalue("pg_url")
        yield make_engine(store_url=url)


@pytest.fixture
def regions(eng):
    """One in-process client per Region, all on the same engine and store."""
    return {r: kms_core.client(engine=eng, region_name=r) for r in (US, EU, AP)}


def _code(err: pytest.ExceptionInfo) -> tuple[str, str]:
    e = err.value.response["Error"]
    return e["Code"], e["Message"]


def test_create_describe_replicate(regions):
    us, eu = regions[US], regions[EU]
    md = us.create_key(MultiRegion=True, Description="primary")["KeyMetadata"]
    kid = md["KeyId"]
    assert re.fullmatch(r"mrk-[0-9a-f]{32}", kid)
    assert md["MultiRegion"] is True and md["Arn"] == f"arn:aws:kms:{US}:111122223333:key/{kid}"
    assert md["MultiRegionConfiguration"] == {
        "MultiRegionKeyType": "PRIMARY", "PrimaryKey": {"Arn": md["Arn"], "Region": US}, "ReplicaKeys": []}
    out = us.replicate_key(KeyId=kid, ReplicaRegion=EU, Description="replica",
                           Tags=[{"TagKey": "team", "TagValue": "eu"}])
    rmd = out["ReplicaKeyMetadata"]
    eu_arn = f"arn:aws:kms:{EU}:111122223333:key/{kid}"
    assert (rmd["KeyId"], rmd["Arn"], rmd["KeyState"], rmd["Enabled"]) == (kid, eu_arn, "Creating", False)
    assert rmd["MultiRegionConfiguration"]["MultiRegionKeyType"] == "REPLICA"
    assert out["ReplicaTags"] == [{"TagKey": "team", "TagValue": "eu"}]
    assert json.loads(out["ReplicaPolicy"])["Statement"][0]["Principal"] == {"AWS": "arn:aws:iam::111122223333:root"}
    # Any later read: Enabled; both Regions list each other.
    d = eu.describe_key(KeyId=kid)["KeyMetadata"]
    assert (d["KeyState"], d["Description"], d["Enabled"]) == ("Enabled", "replica", True)
    cfg = us.describe_key(KeyId=kid)["KeyMetadata"]["MultiRegionConfiguration"]
    assert cfg["ReplicaKeys"] == [{"Arn": eu_arn, "Region": EU}]
    assert d["MultiRegionConfiguration"]["PrimaryKey"] == {"Arn": md["Arn"], "Region": US}
    assert [k["KeyId"] for k in eu.list_keys()["Keys"]] == [kid]
    assert regions[AP].list_keys()["Keys"] == []
    # A single-Region key still says MultiRegion false and has a UUID id.
    single = us.create_key()["KeyMetadata"]
    assert single["MultiRegion"] is False and "MultiRegionConfiguration" not in single


@pytest.mark.parametrize(("spec", "usage"), [("RSA_2048", "SIGN_VERIFY"), ("HMAC_256", "GENERATE_VERIFY_MAC"),
                                             ("ECC_NIST_P256", "KEY_AGREEMENT")])
def test_every_spec_replicates_with_shared_material(regions, spec, usage):
    us, eu = regions[US], regions[EU]
    kid = us.create_key(MultiRegion=True, KeySpec=spec, KeyUsage=usage)["KeyMetadata"]["KeyId"]
    us.replicate_key(KeyId=kid, ReplicaRegion=EU)
    assert eu.describe_key(KeyId=kid)["KeyMetadata"]["KeySpec"] == spec
    if usage == "SIGN_VERIFY":
        sig = us.sign(KeyId=kid, Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256")["Signature"]
        assert eu.verify(KeyId=kid, Message=b"m", Signature=sig, SigningAlgorithm="RSASSA_PSS_SHA_256")["SignatureValid"]
    elif usage == "GENERATE_VERIFY_MAC":
        mac = us.generate_mac(KeyId=kid, Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"]
        assert eu.verify_mac(KeyId=kid, Message=b"m", Mac=mac, MacAlgorithm="HMAC_SHA_256")["MacValid"]
    else:
        assert us.get_public_key(KeyId=kid)["PublicKey"] == eu.get_public_key(KeyId=kid)["PublicKey"]


def test_decrypt_across_regions_and_shared_rotation(regions):
    us, eu = regions[US], regions[EU]
    kid = us.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    us.replicate_key(KeyId=kid, ReplicaRegion=EU)
    blob = us.encrypt(KeyId=kid, Plaintext=b"from us", EncryptionContext={"a": "b"})["CiphertextBlob"]
    assert blob[0] == blobfmt.VERSION_MRK
    out = eu.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})
    assert out["Plaintext"] == b"from us" and out["KeyId"] == f"arn:aws:kms:{EU}:111122223333:key/{kid}"
    back = eu.encrypt(KeyId=kid, Plaintext=b"from eu")["CiphertextBlob"]
    assert us.decrypt(CiphertextBlob=back)["Plaintext"] == b"from eu"
    re_enc = eu.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext={"a": "b"}, DestinationKeyId=kid)
    assert us.decrypt(CiphertextBlob=re_enc["CiphertextBlob"])["Plaintext"] == b"from us"
    # Rotation: on the primary only; the replica sees the new material at once.
    us.enable_key_rotation(KeyId=kid, RotationPeriodInDays=90)
    assert eu.get_key_rotation_status(KeyId=kid)["KeyRotationEnabled"] is True
    us.rotate_key_on_demand(KeyId=kid)
    cur = us.describe_key(KeyId=kid)["KeyMetadata"]["CurrentKeyMaterialId"]
    assert eu.describe_key(KeyId=kid)["KeyMetadata"]["CurrentKeyMaterialId"] == cur
    new = eu.encrypt(KeyId=kid, Plaintext=b"v2")["CiphertextBlob"]
    assert us.decrypt(CiphertextBlob=new)["Plaintext"] == b"v2"
    assert eu.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})["Plaintext"] == b"from us"
    assert len(eu.list_key_rotations(KeyId=kid)["Rotations"]) == 1
    arn = f"arn:aws:kms:{EU}:111122223333:key/{kid}"
    for call in (lambda: eu.enable_key_rotation(KeyId=kid), lambda: eu.disable_key_rotation(KeyId=kid),
                 lambda: eu.rotate_key_on_demand(KeyId=kid)):
        with pytest.raises(ClientError) as err:
            call()
        assert _code(err) == ("UnsupportedOperationException",
                              f"{arn} is a multi-Region replica key. Rotation is managed on the primary key in {US}.")
    # Another Region without a replica: the blob names no key there (as for any unknown key).
    with pytest.raises(ClientError) as err:
        regions[AP].decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})
    assert _code(err) == ("InvalidCiphertextException", "")
    with pytest.raises(ClientError) as err:
        regions[AP].describe_key(KeyId=kid)
    assert _code(err) == ("NotFoundException", f"Key 'arn:aws:kms:{AP}:111122223333:key/{kid}' does not exist")


def test_per_region_policy_tags_aliases_state_description(regions):
    us, eu = regions[US], regions[EU]
    kid = us.create_key(MultiRegion=True, Tags=[{"TagKey": "k", "TagValue": "us"}])["KeyMetadata"]["KeyId"]
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*",
        "Resource": "*", "Sid": "eu"}]})
    us.replicate_key(KeyId=kid, ReplicaRegion=EU, Policy=policy)
    assert eu.get_key_policy(KeyId=kid)["Policy"] == policy
    assert json.loads(us.get_key_policy(KeyId=kid)["Policy"])["Id"] == "key-default-1"
    assert eu.list_resource_tags(KeyId=kid)["Tags"] == []
    eu.tag_resource(KeyId=kid, Tags=[{"TagKey": "k", "TagValue": "eu"}])
    assert us.list_resource_tags(KeyId=kid)["Tags"] == [{"TagKey": "k", "TagValue": "us"}]
    us.create_alias(AliasName="alias/same", TargetKeyId=kid)
    eu.create_alias(AliasName="alias/same", TargetKeyId=kid)
    blob = eu.encrypt(KeyId="alias/same", Plaintext=b"x")["CiphertextBlob"]
    assert us.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
    assert [a["TargetKeyId"] for a in eu.list_aliases(KeyId=kid)["Aliases"]] == [kid]
    us.update_key_description(KeyId=kid, Description="only us")
    assert eu.describe_key(KeyId=kid)["KeyMetadata"]["Description"] == ""
    eu.disable_key(KeyId=kid)
    assert us.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "Enabled"
    with pytest.raises(ClientError) as err:
        eu.encrypt(KeyId=kid, Plaintext=b"x")
    assert _code(err) == ("DisabledException", f"arn:aws:kms:{EU}:111122223333:key/{kid} is disabled.")
    grant = us.create_grant(KeyId=kid, GranteePrincipal="arn:aws:iam::111122223333:role/r",
                            Operations=["Decrypt"])["GrantId"]
    assert [g["GrantId"] for g in us.list_grants(KeyId=kid)["Grants"]] == [grant]
    assert eu.list_grants(KeyId=kid)["Grants"] == []


def test_errors(regions):
    us, eu = regions[US], regions[EU]
    single = us.create_key()["KeyMetadata"]
    kid = us.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    us_arn = f"arn:aws:kms:{US}:111122223333:key/{kid}"
    with pytest.raises(ClientError) as err:
        us.replicate_key(KeyId=single["KeyId"], ReplicaRegion=EU)
    assert _code(err) == ("UnsupportedOperationException", f"{single['Arn']} is not a multi-region primary key.")
    us.replicate_key(KeyId=kid, ReplicaRegion=EU)
    with pytest.raises(ClientError) as err:
        eu.replicate_key(KeyId=kid, ReplicaRegion=AP)
    assert _code(err) == ("UnsupportedOperationException",
                          f"arn:aws:kms:{EU}:111122223333:key/{kid} is not a multi-region primary key.")
    with pytest.raises(ClientError) as err:
        us.replicate_key(KeyId=kid, ReplicaRegion=EU)
    assert _code(err) == ("AlreadyExistsException", f"Key 'arn:aws:kms:{EU}:111122223333:key/{kid}' already exists")
    with pytest.raises(ClientError) as err:
        us.replicate_key(KeyId=kid, ReplicaRegion=US)
    assert _code(err)[0] == "ValidationException"
    with pytest.raises(ClientError) as err:
        us.replicate_key(KeyId=kid, ReplicaRegion="Not_A_Region")
    assert _code(err)[0] == "ValidationException"
    with pytest.raises(ClientError) as err:
        us.replicate_key(KeyId="alias/nope", ReplicaRegion=AP)
    assert _code(err) == ("NotFoundException", "Invalid keyId 'alias/nope'")
    with pytest.raises(ClientError) as err:
        us.update_primary_region(KeyId=kid, PrimaryRegion=AP)
    assert _code(err) == ("NotFoundException", f"Key 'arn:aws:kms:{AP}:111122223333:key/{kid}' does not exist")
    with pytest.raises(ClientError) as err:
        us.update_primary_region(KeyId=single["KeyId"], PrimaryRegion=EU)
    assert _code(err)[0] == "UnsupportedOperationException"
    eu.disable_key(KeyId=kid)
    with pytest.raises(ClientError) as err:
        us.update_primary_region(KeyId=kid, PrimaryRegion=EU)
    assert _code(err) == ("DisabledException", f"arn:aws:kms:{EU}:111122223333:key/{kid} is disabled.")
    # An upper-case mrk id names no key (AWS ids are lower-case).
    with pytest.raises(ClientError) as err:
        us.describe_key(KeyId=kid.upper().replace("MRK-", "mrk-"))
    assert _code(err)[0] == "NotFoundException"
    assert us_arn


def test_update_primary_region(regions):
    us, eu, ap = regions[US], regions[EU], regions[AP]
    kid = us.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    us.replicate_key(KeyId=kid, ReplicaRegion=EU)
    us.replicate_key(KeyId=kid, ReplicaRegion=AP)
    assert us.update_primary_region(KeyId=kid, PrimaryRegion=EU)["ResponseMetadata"]["HTTPStatusCode"] == 200
    for client in (us, eu, ap):
        cfg = client.describe_key(KeyId=kid)["KeyMetadata"]["MultiRegionConfiguration"]
        assert cfg["PrimaryKey"]["Region"] == EU
        assert sorted(r["Region"] for r in cfg["ReplicaKeys"]) == [AP, US]
    assert us.describe_key(KeyId=kid)["KeyMetadata"]["MultiRegionConfiguration"]["MultiRegionKeyType"] == "REPLICA"
    with pytest.raises(ClientError) as err:
        us.rotate_key_on_demand(KeyId=kid)
    assert _code(err)[0] == "UnsupportedOperationException"
    eu.rotate_key_on_demand(KeyId=kid)  # the new primary rotates
    with pytest.raises(ClientError) as err:
        us.update_primary_region(KeyId=kid, PrimaryRegion=AP)
    assert _code(err)[1].endswith("is not a multi-region primary key.")


def test_deletion_waits_for_replicas(regions, eng):
    us, eu, ap = regions[US], regions[EU], regions[AP]
    kid = us.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    us.replicate_key(KeyId=kid, ReplicaRegion=EU)
    us.replicate_key(KeyId=kid, ReplicaRegion=AP)
    out = us.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
    assert (out["KeyState"], out["PendingWindowInDays"]) == ("PendingReplicaDeletion", 7)
    assert "DeletionDate" not in out
    md = us.describe_key(KeyId=kid)["KeyMetadata"]
    assert md["KeyState"] == "PendingReplicaDeletion" and "DeletionDate" not in md
    with pytest.raises(ClientError) as err:
        us.encrypt(KeyId=kid, Plaintext=b"x")
    assert _code(err) == ("KMSInvalidStateException", f"arn:aws:kms:{US}:111122223333:key/{kid} is pending deletion.")
    # The replicas still work, and delete on their own schedules.
    assert eu.encrypt(KeyId=kid, Plaintext=b"x")["CiphertextBlob"]
    eu.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
    ap.schedule_key_deletion(KeyId=kid, PendingWindowInDays=10)
    eng.clock.advance(timedelta(days=8))
    with pytest.raises(ClientError) as err:
        eu.describe_key(KeyId=kid)
    assert _code(err)[0] == "NotFoundException"
    assert us.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "PendingReplicaDeletion"
    assert [r["Region"] for r in us.describe_key(KeyId=kid)["KeyMetadata"]["MultiRegionConfiguration"]["ReplicaKeys"]] == [AP]
    eng.clock.advance(timedelta(days=3))  # the last replica's window ended: the primary's own 7 days start then
    md = us.describe_key(KeyId=kid)["KeyMetadata"]
    assert md["KeyState"] == "PendingDeletion" and md["PendingDeletionWindowInDays"] == 7
    assert md["MultiRegionConfiguration"]["ReplicaKeys"] == []
    eng.clock.advance(timedelta(days=7, seconds=1))
    with pytest.raises(ClientError) as err:
        us.describe_key(KeyId=kid)
    assert _code(err)[0] == "NotFoundException"


def test_cancel_deletion_of_primary_and_replica(regions):
    us, eu = regions[US], regions[EU]
    kid = us.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    us.replicate_key(KeyId=kid, ReplicaRegion=EU)
    us.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
    eu.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
    us.cancel_key_deletion(KeyId=kid)
    eu.cancel_key_deletion(KeyId=kid)
    assert us.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "Disabled"
    assert eu.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "Disabled"
    with pytest.raises(ClientError) as err:
        us.cancel_key_deletion(KeyId=kid)
    assert _code(err)[1].endswith("is not pending deletion.")


def test_external_origin_imports_per_region(regions):
    import os

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    us, eu = regions[US], regions[EU]
    kid = us.create_key(MultiRegion=True, Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
    rmd = us.replicate_key(KeyId=kid, ReplicaRegion=EU)["ReplicaKeyMetadata"]
    assert rmd["Origin"] == "EXTERNAL"
    assert eu.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "PendingImport"
    material = os.urandom(32)

    def imp(client, mat):
        params = client.get_parameters_for_import(KeyId=kid, WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                                   WrappingKeySpec="RSA_2048")
        pub = serialization.load_der_public_key(params["PublicKey"])
        wrapped = pub.encrypt(mat, padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
        client.import_key_material(KeyId=kid, ImportToken=params["ImportToken"], EncryptedKeyMaterial=wrapped,
                                   ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")

    imp(us, material)
    assert us.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "Enabled"
    assert eu.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "PendingImport"  # imports separately
    with pytest.raises(ClientError) as err:
        imp(eu, os.urandom(32))
    assert _code(err)[0] == "IncorrectKeyMaterialException"
    imp(eu, material)
    blob = us.encrypt(KeyId=kid, Plaintext=b"byok")["CiphertextBlob"]
    assert eu.decrypt(CiphertextBlob=blob)["Plaintext"] == b"byok"
    eu.delete_imported_key_material(KeyId=kid)  # only the EU key loses it
    assert eu.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "PendingImport"
    assert us.decrypt(CiphertextBlob=blob)["Plaintext"] == b"byok"


def test_last_usage_is_per_region(regions, eng, clock):
    """GetKeyLastUsage reports the usage of the caller's Region's key only: the same key id
    names one key per Region, each with its own audit trail (AWS tracks each key)."""
    from kms_core.audit import AuditReader, attach

    log = attach(eng)
    try:
        us, eu = regions[US], regions[EU]
        kid = us.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
        us.replicate_key(KeyId=kid, ReplicaRegion=EU)
        eu_arn = f"arn:aws:kms:{EU}:111122223333:key/{kid}"
        blob = us.encrypt(KeyId=kid, Plaintext=b"x")["CiphertextBlob"]
        assert us.get_key_last_usage(KeyId=kid)["KeyLastUsage"]["Operation"] == "Encrypt"
        out = eu.get_key_last_usage(KeyId=kid)
        assert out["KeyId"] == eu_arn and "KeyLastUsage" not in out
        clock.advance(seconds=10)
        dec = eu.decrypt(CiphertextBlob=blob)
        usage = eu.get_key_last_usage(KeyId=kid)["KeyLastUsage"]
        assert (usage["Operation"], usage["KmsRequestId"]) == ("Decrypt", dec["ResponseMetadata"]["RequestId"])
        assert us.get_key_last_usage(KeyId=kid)["KeyLastUsage"]["Operation"] == "Encrypt"
        clock.advance(seconds=10)
        us.generate_data_key(KeyId=kid, KeySpec="AES_256")
        assert us.get_key_last_usage(KeyId=kid)["KeyLastUsage"]["Operation"] == "GenerateDataKey"
        assert eu.get_key_last_usage(KeyId=kid)["KeyLastUsage"]["Operation"] == "Decrypt"
        with pytest.raises(ClientError):  # failed: recorded (on the EU key, named by its bare id), not usage
            eu.sign(KeyId=kid, Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256")
        assert eu.get_key_last_usage(KeyId=kid)["KeyLastUsage"]["Operation"] == "Decrypt"
        # The events name the Region's key; a key-ARN filter gives that Region's, a key id every Region's.
        log.flush()
        reader = AuditReader(eng.store)
        ev = json.loads(reader.events(operation="Decrypt")[-1][1])
        assert ev["awsRegion"] == EU and ev["resources"][0]["ARN"] == eu_arn
        assert [json.loads(b)["eventName"] for _, b in reader.events(key=eu_arn)] == [
            "GetKeyLastUsage", "Decrypt", "GetKeyLastUsage", "GetKeyLastUsage", "Sign", "GetKeyLastUsage"]
        assert len(reader.events(key=kid)) > len(reader.events(key=eu_arn))
        assert reader.verify().ok
    finally:
        log.close()


BOB = "arn:aws:iam::111122223333:user/bob"


def _policy(*denials: tuple[str, dict]) -> str:
    """Root and bob may do everything, except bob's ``(action, condition)`` denials."""
    statements = [{"Sid": "root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                   "Action": "kms:*", "Resource": "*"},
                  {"Sid": "bob", "Effect": "Allow", "Principal": {"AWS": BOB}, "Action": "kms:*", "Resource": "*"}]
    statements += [{"Effect": "Deny", "Principal": {"AWS": BOB}, "Action": action, "Resource": "*",
                    "Condition": cond} for action, cond in denials]
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def test_multi_region_condition_keys(regions, eng):
    """kms:MultiRegion, kms:MultiRegionKeyType, kms:ReplicaRegion and kms:PrimaryRegion in key
    policies, as AWS documents them (docs/policies.md)."""
    us, ap = regions[US], regions[AP]
    policy = _policy(("kms:Encrypt", {"Bool": {"kms:MultiRegion": "true"}}),
                     ("kms:Decrypt", {"StringEquals": {"kms:MultiRegionKeyType": "REPLICA"}}),
                     ("kms:ReplicateKey", {"StringNotEquals": {"kms:ReplicaRegion": EU}}),
                     ("kms:UpdatePrimaryRegion", {"StringNotEquals": {"kms:PrimaryRegion": EU}}),
                     ("kms:DescribeKey", {"Null": {"kms:MultiRegionKeyType": "true"}}))
    kid = us.create_key(MultiRegion=True, Policy=policy)["KeyMetadata"]["KeyId"]
    single = us.create_key(Policy=policy)["KeyMetadata"]["KeyId"]
    bob_us = kms_core.client(engine=eng, region_name=US, principal=BOB)
    bob_eu = kms_core.client(engine=eng, region_name=EU, principal=BOB)

    def denied(call) -> None:
        with pytest.raises(ClientError) as err:
            call()
        assert _code(err)[0] == "AccessDeniedException"

    # kms:ReplicaRegion: bob may replicate into EU only.
    denied(lambda: bob_us.replicate_key(KeyId=kid, ReplicaRegion=AP))
    assert ap.list_keys()["Keys"] == []
    bob_us.replicate_key(KeyId=kid, ReplicaRegion=EU, Policy=policy)
    # kms:MultiRegion: no Encrypt with a multi-Region key; a single-Region key is not one.
    denied(lambda: bob_us.encrypt(KeyId=kid, Plaintext=b"x"))
    assert bob_us.encrypt(KeyId=single, Plaintext=b"x")["CiphertextBlob"]
    # kms:MultiRegionKeyType: the replica refuses Decrypt, the primary does not; a
    # single-Region key has no such key (Null), so DescribeKey is refused on it alone.
    blob = us.encrypt(KeyId=kid, Plaintext=b"x")["CiphertextBlob"]
    assert bob_us.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
    denied(lambda: bob_eu.decrypt(CiphertextBlob=blob))
    assert bob_us.describe_key(KeyId=kid)["KeyMetadata"]["MultiRegion"] is True
    denied(lambda: bob_us.describe_key(KeyId=single))
    # kms:PrimaryRegion: bob may move the primary to EU only.
    us.replicate_key(KeyId=kid, ReplicaRegion=AP)
    denied(lambda: bob_us.update_primary_region(KeyId=kid, PrimaryRegion=AP))
    bob_us.update_primary_region(KeyId=kid, PrimaryRegion=EU)
    # Roles swapped: now the US key is the replica and refuses bob's Decrypt, EU's allows it.
    denied(lambda: bob_us.decrypt(CiphertextBlob=blob))
    assert bob_eu.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"


def test_replicate_key_permissions_and_audit(make_engine, kms_home):
    eng = make_engine(store_url=f"sqlite:///{kms_home}/perm.db")
    us = kms_core.client(engine=eng, region_name=US)
    kid = us.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    deny = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::111122223333:user/bob"},
         "Action": "kms:ReplicateKey", "Resource": "*"}]})
    us.put_key_policy(KeyId=kid, Policy=deny)
    bob = kms_core.client(engine=eng, region_name=US, principal="arn:aws:iam::111122223333:user/bob")
    with pytest.raises(ClientError) as err:
        bob.replicate_key(KeyId=kid, ReplicaRegion=EU)
    assert _code(err)[0] == "AccessDeniedException"
    seen: list[tuple[str, str | None]] = []
    eng.auditor = lambda ctx, op, params, result, error: seen.append((op, error and error.code))
    try:
        us.replicate_key(KeyId=kid, ReplicaRegion=EU)
    finally:
        eng.auditor = None
    assert seen == [("ReplicateKey", None)]


def _downgrade_to_schema_1(url: str, *, partial: bool = False) -> None:
    """Make a store look like schema 1 (no multi-Region columns), or with ``partial`` like a
    migration stopped after its first ALTER (MariaDB commits each DDL statement)."""
    import sqlalchemy as sa

    eng = sa.create_engine(url)
    with eng.begin() as conn:
        drop_index = "DROP INDEX ix_kms_keys_mrk_id"
        if eng.dialect.name in ("mysql", "mariadb"):
            drop_index += " ON kms_keys"
        conn.exec_driver_sql(drop_index)  # SQLite cannot drop an indexed column
        if not partial:
            conn.exec_driver_sql("ALTER TABLE kms_keys DROP COLUMN mrk_id")
        conn.exec_driver_sql("ALTER TABLE kms_keys DROP COLUMN primary_region")
        conn.exec_driver_sql("UPDATE kms_state SET schema_version = 1")
    eng.dispose()


def _schema(url: str) -> tuple[int, set[str], set[str]]:
    import sqlalchemy as sa

    eng = sa.create_engine(url)
    try:
        with eng.connect() as conn:
            version = conn.exec_driver_sql("SELECT schema_version FROM kms_state").scalar_one()
            found = sa.inspect(conn)
            return (version, {c["name"] for c in found.get_columns("kms_keys")},
                    {str(i["name"]) for i in found.get_indexes("kms_keys")})
    finally:
        eng.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def any_store_url(request, kms_home):
    if request.param == "sqlite":
        return f"sqlite:///{kms_home}/old.db"
    return request.getfixturevalue("pg_url" if request.param == "postgresql" else "mysql_url")


@pytest.mark.parametrize("partial", [False, True], ids=["schema-1", "half-migrated"])
def test_migration_from_schema_1(make_engine, any_store_url, partial):
    """A version-1 store (no multi-Region columns) opens, migrates and keeps its keys, on
    SQLite, PostgreSQL and MariaDB; so does one whose migration stopped half-way."""
    url = any_store_url
    old = make_engine(store_url=url)
    kms = kms_core.client(engine=old, region_name=US)
    kid = kms.create_key(Description="before")["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=kid, Plaintext=b"old")["CiphertextBlob"]
    old.close()
    _downgrade_to_schema_1(url, partial=partial)
    version, columns, _ = _schema(url)
    assert version == 1 and "primary_region" not in columns and ("mrk_id" in columns) == partial
    new = make_engine(store_url=url)
    version, columns, indexes = _schema(url)
    assert version == 2 and {"mrk_id", "primary_region"} <= columns and "ix_kms_keys_mrk_id" in indexes
    kms = kms_core.client(engine=new, region_name=US)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"old"
    md = kms.describe_key(KeyId=kid)["KeyMetadata"]
    assert (md["MultiRegion"], md["Description"]) == (False, "before")
    mrk = kms.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    kms.replicate_key(KeyId=mrk, ReplicaRegion=EU)
    mrk_blob = kms.encrypt(KeyId=mrk, Plaintext=b"new")["CiphertextBlob"]
    eu = kms_core.client(engine=new, region_name=EU)
    assert eu.decrypt(CiphertextBlob=mrk_blob)["Plaintext"] == b"new"
    new.close()
    again = make_engine(store_url=url)  # opening a migrated store changes nothing
    assert _schema(url)[0] == 2
    assert kms_core.client(engine=again, region_name=EU).describe_key(KeyId=mrk)["KeyMetadata"]["MultiRegion"]


def test_concurrent_migration_on_mariadb(make_engine, mysql_url):
    """Processes opening one schema-1 MariaDB store at once: one migrates, the others wait for
    it (MariaDB's DDL commits at once, so the row lock alone would not keep them apart)."""
    import threading

    old = make_engine(store_url=mysql_url)
    kid = kms_core.client(engine=old).create_key()["KeyMetadata"]["KeyId"]
    old.close()
    _downgrade_to_schema_1(mysql_url)
    errors: list[BaseException] = []
    opened = []
    start = threading.Barrier(3)

    def open_store():
        try:
            start.wait(10)
            opened.append(make_engine(store_url=mysql_url))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=open_store) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and len(opened) == 3
    assert _schema(mysql_url)[0] == 2
    for eng in opened:
        assert kms_core.client(engine=eng).describe_key(KeyId=kid)["KeyMetadata"]["MultiRegion"] is False


def test_blob_v2_header_and_tamper():
    material = bytes(range(32))
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    aead = AESGCM(material)
    kid = "mrk-1234abcd12ab34cd56ef1234567890ab"
    blob = blobfmt.seal(aead, kid, 1, b"hello", b"\x00\x00", nonce=bytes(12))
    assert blob.hex() == "021234abcd12ab34cd56ef1234567890ab0000000100000000000000000000000066d9d9b2dac107bb2d1f3b167f1ae6ad56dfce5ab0"  # docs/ciphertext-blob.md
    h = blobfmt.parse_header(blob)
    assert (h.key_id, h.material_version) == (kid, 1)
    assert blobfmt.open_(aead, h, blob, b"\x00\x00") == b"hello"
    # The same bytes labelled as a UUID key (version 1), or any flipped header byte, fail.
    for tampered in (b"\x01" + blob[1:], blob[:5] + bytes([blob[5] ^ 1]) + blob[6:], b"\x03" + blob[1:]):
        with pytest.raises(Exception) as err:
            blobfmt.open_(aead, blobfmt.parse_header(tampered), tampered, b"\x00\x00")
        assert getattr(err.value, "code", None) == "InvalidCiphertextException"
