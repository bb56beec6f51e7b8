"""Multi-Region keys through the `kms` CLI (`replicate-key`, `update-primary-region`) (tests/engine/test_multi_region.py has the rest)."""
from __future__ import annotations

US, EU = "us-east-1", "eu-west-1"


def test_cli_replicate_and_update_primary_region(cli):
    made = cli("create-key", "--multi-region", "--region", US)
    assert made.rc == 0, made
    kid = made.json["KeyMetadata"]["KeyId"]
    rep = cli("replicate-key", "--key-id", kid, "--replica-region", EU, "--region", US)
    assert rep.rc == 0, rep
    assert set(rep.json) == {"ReplicaKeyMetadata", "ReplicaPolicy", "ReplicaTags"}
    assert rep.json["ReplicaKeyMetadata"]["KeyState"] == "Creating"
    assert rep.json["ReplicaKeyMetadata"]["Arn"] == f"arn:aws:kms:{EU}:111122223333:key/{kid}"
    upd = cli("update-primary-region", "--key-id", kid, "--primary-region", EU, "--region", US)
    assert (upd.rc, upd.out) == (0, "")
    desc = cli("describe-key", "--key-id", kid, "--region", EU)
    assert desc.json["KeyMetadata"]["MultiRegionConfiguration"]["MultiRegionKeyType"] == "PRIMARY"
