"""Multi-Region keys through `kms serve` with boto3 (tests/engine/test_multi_region.py has the rest)."""
from __future__ import annotations

US, EU = "us-east-1", "eu-west-1"


def test_replica_through_the_server_with_boto3(make_server):
    srv = make_server()
    key = srv.create_access_key("alice")
    us, eu = srv.client(key, region=US), srv.client(key, region=EU)
    kid = us.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    out = us.replicate_key(KeyId=kid, ReplicaRegion=EU)
    assert out["ReplicaKeyMetadata"]["KeyState"] == "Creating"
    blob = us.encrypt(KeyId=kid, Plaintext=b"wire")["CiphertextBlob"]
    assert eu.decrypt(CiphertextBlob=blob)["Plaintext"] == b"wire"
    us.update_primary_region(KeyId=kid, PrimaryRegion=EU)
    assert eu.describe_key(KeyId=kid)["KeyMetadata"]["MultiRegionConfiguration"]["MultiRegionKeyType"] == "PRIMARY"
