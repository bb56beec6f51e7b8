"""AWS managed keys (``alias/aws/<service>``): created on first Encrypt,
GenerateDataKey* or DescribeKey, exactly once (threads and processes), with
KeyManager AWS and yearly rotation, and closed to administration."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

import kms_core

SERVICES = ["s3", "elasticfilesystem", "rds", "dynamodb", "lambda", "ebs", "secretsmanager"]
# AWS's code for these refusals is not recorded (reference §2.7, §7): the key
# policy denies them, so AccessDenied is likely; any clear refusal passes as
# long as nothing changes.
REFUSAL_CODES = {"AccessDeniedException", "UnsupportedOperationException",
                 "KMSInvalidStateException", "ValidationException", "InvalidAliasNameException"}


def _aliases(kms):
    return {a["AliasName"]: a for a in kms.list_aliases()["Aliases"]}


@pytest.mark.parametrize("service", SERVICES)
def test_describe_key_creates_managed_key(kms, clock, service, helpers):
    alias = f"alias/aws/{service}"
    meta = kms.describe_key(KeyId=alias)["KeyMetadata"]
    assert meta["KeyManager"] == "AWS"
    assert (meta["KeyState"], meta["Enabled"], meta["Origin"]) == ("Enabled", True, "AWS_KMS")
    assert (meta["KeySpec"], meta["KeyUsage"]) == ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT")
    assert helpers.UUID_RE.match(meta["KeyId"])
    assert helpers.MATERIAL_ID_RE.match(meta["CurrentKeyMaterialId"])
    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == meta["KeyId"]
    assert _aliases(kms)[alias]["TargetKeyId"] == meta["KeyId"]
    status = kms.get_key_rotation_status(KeyId=meta["KeyId"])
    assert status["KeyRotationEnabled"] is True
    assert status["RotationPeriodInDays"] == 365
    assert abs((status["NextRotationDate"] - (clock.now() + timedelta(days=365))).total_seconds()) < 86400


@pytest.mark.parametrize("op", ["encrypt", "generate_data_key", "generate_data_key_without_plaintext"])
def test_first_use_creates_managed_key(kms, op):
    alias = "alias/aws/ebs"
    kwargs = {"encrypt": {"Plaintext": b"volume"}}.get(op, {"KeySpec": "AES_256"})
    out = getattr(kms, op)(KeyId=alias, **kwargs)
    meta = kms.describe_key(KeyId=alias)["KeyMetadata"]
    assert out["KeyId"] == meta["Arn"]
    assert meta["KeyManager"] == "AWS"
    # Usable like any key afterwards, and found from the blob on Decrypt.
    assert kms.decrypt(CiphertextBlob=out["CiphertextBlob"])["KeyId"] == meta["Arn"]
    assert sum(1 for k in kms.list_keys()["Keys"] if k["KeyId"] == meta["KeyId"]) == 1


def test_each_service_gets_its_own_key(kms):
    ids = {kms.describe_key(KeyId=f"alias/aws/{s}")["KeyMetadata"]["KeyId"] for s in SERVICES}
    assert len(ids) == len(SERVICES)


def test_managed_key_rotates_yearly(kms, clock):
    meta = kms.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]
    blob = kms.encrypt(KeyId="alias/aws/s3", Plaintext=b"year one")["CiphertextBlob"]
    clock.advance(days=366)
    now = kms.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]["CurrentKeyMaterialId"]
    assert now != meta["CurrentKeyMaterialId"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"year one"


@pytest.fixture
def managed(kms, new_key):
    meta = kms.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]
    customer = new_key()
    kms.create_alias(AliasName="alias/customer", TargetKeyId=customer["KeyId"])
    return meta, customer


def _admin_calls(kms, kid, customer_id):
    return {
        "DisableKey": lambda: kms.disable_key(KeyId=kid),
        "ScheduleKeyDeletion": lambda: kms.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7),
        "TagResource": lambda: kms.tag_resource(KeyId=kid, Tags=[{"TagKey": "a", "TagValue": "b"}]),
        "UpdateKeyDescription": lambda: kms.update_key_description(KeyId=kid, Description="mine"),
        "EnableKeyRotation": lambda: kms.enable_key_rotation(KeyId=kid, RotationPeriodInDays=90),
        "DisableKeyRotation": lambda: kms.disable_key_rotation(KeyId=kid),
        "RotateKeyOnDemand": lambda: kms.rotate_key_on_demand(KeyId=kid),
        "CreateAlias(target managed)": lambda: kms.create_alias(AliasName="alias/mine-too", TargetKeyId=kid),
        "UpdateAlias(customer alias to managed)": lambda: kms.update_alias(AliasName="alias/customer",
                                                                           TargetKeyId=kid),
        "UpdateAlias(aws alias to customer)": lambda: kms.update_alias(AliasName="alias/aws/s3",
                                                                       TargetKeyId=customer_id),
        "DeleteAlias(aws alias)": lambda: kms.delete_alias(AliasName="alias/aws/s3"),
    }


ADMIN_OPS = list(_admin_calls(None, None, None))


@pytest.mark.parametrize("op", ADMIN_OPS)
def test_managed_key_cannot_be_administered(kms, managed, op):
    meta, customer = managed
    call = _admin_calls(kms, meta["KeyId"], customer["KeyId"])[op]
    with pytest.raises(ClientError) as info:
        call()
    assert info.value.response["Error"]["Code"] in REFUSAL_CODES, info.value.response["Error"]
    assert info.value.response["Error"]["Message"]
    # Nothing changed.
    after = kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]
    for field in ("KeyState", "Description", "CurrentKeyMaterialId", "KeyManager"):
        assert after[field] == meta[field]
    status = kms.get_key_rotation_status(KeyId=meta["KeyId"])
    assert (status["KeyRotationEnabled"], status["RotationPeriodInDays"]) == (True, 365)
    assert kms.list_resource_tags(KeyId=meta["KeyId"])["Tags"] == []
    aliases = _aliases(kms)
    assert aliases["alias/aws/s3"]["TargetKeyId"] == meta["KeyId"]
    assert aliases["alias/customer"]["TargetKeyId"] == customer["KeyId"]
    assert "alias/mine-too" not in aliases
    assert kms.list_key_rotations(KeyId=meta["KeyId"])["Rotations"] == []


def test_managed_key_first_use_from_8_threads(kms):
    before = {k["KeyId"] for k in kms.list_keys()["Keys"]}
    barrier = threading.Barrier(8)
    results, errors = [], []

    def worker(i):
        try:
            barrier.wait(timeout=10)
            if i % 2:
                results.append(kms.describe_key(KeyId="alias/aws/dynamodb")["KeyMetadata"]["Arn"])
            else:
                results.append(kms.generate_data_key(KeyId="alias/aws/dynamodb", KeySpec="AES_256")["KeyId"])
        except Exception as exc:  # collected and reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(results) == 8 and len(set(results)) == 1
    new = {k["KeyId"] for k in kms.list_keys()["Keys"]} - before
    assert len(new) == 1
    assert results[0].endswith(new.pop())


# --- several processes on one store ---------------------------------------------

# Each child opens both stores, then races twice: on the SQLite file when
# "go-0" appears and on PostgreSQL when "go-1" appears.  Python start-up is
# the slow part here, so one set of processes serves both stores.
_CHILD = r"""
import base64, json, os, sys, time
import kms_core
sync = os.environ["T_SYNC"]
root = base64.b64decode(os.environ["T_ROOT"])
clients = [kms_core.client(store_url=url, root_key=root, home=os.environ["T_HOME"])
           for url in json.loads(os.environ["T_URLS"])]
for c in clients:
    c.list_keys()  # stores opened before the race starts
out = []
for i, c in enumerate(clients):
    open(os.path.join(sync, "ready-%d-%d" % (i, os.getpid())), "w").close()
    go = os.path.join(sync, "go-%d" % i)
    deadline = time.time() + 60
    while not os.path.exists(go) and time.time() < deadline:
        time.sleep(0.001)
    out.append(c.generate_data_key(KeyId="alias/aws/lambda", KeySpec="AES_256")["KeyId"])
print(json.dumps(out))
"""


def _wait_for(sync, pattern, n, procs):
    deadline = time.time() + 90
    while len(list(sync.glob(pattern))) < n:
        assert time.time() < deadline, "children did not get ready"
        assert all(p.poll() in (None, 0) for p in procs), [p.communicate() for p in procs]
        time.sleep(0.005)


def test_managed_key_first_use_from_4_processes(tmp_path, kms_home, root_key, pg_url, make_engine):
    """Same SQLite file, then same PostgreSQL schema: 4 processes use
    ``alias/aws/lambda`` at once; exactly one key is created on each."""
    urls = [f"sqlite:///{tmp_path / 'shared.db'}", pg_url]
    for url in urls:  # create the stores, so the race is about the key, not the schema
        kms_core.client(engine=make_engine(url)).list_keys()
    sync = tmp_path / "sync"
    sync.mkdir()
    env = dict(os.environ, T_SYNC=str(sync), T_URLS=json.dumps(urls), T_HOME=str(kms_home),
               T_ROOT=base64.b64encode(root_key).decode())
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    try:
        for i in range(len(urls)):
            _wait_for(sync, f"ready-{i}-*", 4, procs)
            (sync / f"go-{i}").touch()
        outs = [p.communicate(timeout=90) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    for i, url in enumerate(urls):
        arns = {r[i] for r in results}
        assert len(arns) == 1, (url, arns)
        # A fresh engine (empty cache) sees one AWS managed key behind the alias.
        fresh = kms_core.client(engine=make_engine(url))
        metas = [fresh.describe_key(KeyId=k["KeyId"])["KeyMetadata"] for k in fresh.list_keys()["Keys"]]
        assert [m["Arn"] for m in metas if m["KeyManager"] == "AWS"] == list(arns)
        assert fresh.describe_key(KeyId="alias/aws/lambda")["KeyMetadata"]["Arn"] in arns
