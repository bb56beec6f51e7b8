"""Key rotation: EnableKeyRotation/DisableKeyRotation, GetKeyRotationStatus,
automatic rotation driven by the clock, RotateKeyOnDemand (at most 25),
ListKeyRotations, and old material kept for the life of the key."""
from __future__ import annotations

from datetime import timedelta

import pytest


# Every test makes its own key; the shared clock only ever moves forward.
@pytest.fixture
def kms(shared_store):
    return shared_store.client


@pytest.fixture
def clock(shared_store):
    return shared_store.clock


def _close(a, b, seconds=60):
    return abs((a - b).total_seconds()) < seconds


def _current(kms, kid):
    return kms.describe_key(KeyId=kid)["KeyMetadata"]["CurrentKeyMaterialId"]


def _rotations(kms, kid, **kwargs):
    return kms.list_key_rotations(KeyId=kid, **kwargs)["Rotations"]


def test_rotation_off_by_default(kms, key):
    status = kms.get_key_rotation_status(KeyId=key["KeyId"])
    assert status["KeyRotationEnabled"] is False
    assert "NextRotationDate" not in status
    assert key["KeyId"] in status["KeyId"]
    resp = kms.list_key_rotations(KeyId=key["KeyId"])
    assert resp["Rotations"] == [] and resp["Truncated"] is False


def test_enable_rotation_default_period(kms, clock, key):
    assert set(kms.enable_key_rotation(KeyId=key["KeyId"])) == {"ResponseMetadata"}
    status = kms.get_key_rotation_status(KeyId=key["Arn"])
    assert status["KeyRotationEnabled"] is True
    assert status["RotationPeriodInDays"] == 365
    assert _close(status["NextRotationDate"], clock.now() + timedelta(days=365))
    assert status["NextRotationDate"].tzinfo is not None


def test_enable_rotation_again_changes_period(kms, clock, key):
    kms.enable_key_rotation(KeyId=key["KeyId"], RotationPeriodInDays=90)
    status = kms.get_key_rotation_status(KeyId=key["KeyId"])
    assert status["RotationPeriodInDays"] == 90
    assert _close(status["NextRotationDate"], clock.now() + timedelta(days=90))
    kms.enable_key_rotation(KeyId=key["Arn"], RotationPeriodInDays=730)
    status = kms.get_key_rotation_status(KeyId=key["KeyId"])
    assert status["RotationPeriodInDays"] == 730
    assert _close(status["NextRotationDate"], clock.now() + timedelta(days=730))


def test_disable_rotation(kms, key):
    kms.enable_key_rotation(KeyId=key["KeyId"])
    assert set(kms.disable_key_rotation(KeyId=key["KeyId"])) == {"ResponseMetadata"}
    status = kms.get_key_rotation_status(KeyId=key["KeyId"])
    assert status["KeyRotationEnabled"] is False
    assert "NextRotationDate" not in status


def test_automatic_rotation_when_clock_passes_period(kms, clock, key, helpers):
    kid = key["KeyId"]
    first = key["CurrentKeyMaterialId"]
    kms.enable_key_rotation(KeyId=kid, RotationPeriodInDays=90)
    old_blob = kms.encrypt(KeyId=kid, Plaintext=b"before", EncryptionContext={"v": "1"})["CiphertextBlob"]
    clock.advance(days=89)
    assert _current(kms, kid) == first
    clock.advance(days=1, seconds=1)
    second = _current(kms, kid)
    assert second != first and helpers.MATERIAL_ID_RE.match(second)
    rot = _rotations(kms, kid)
    assert len(rot) == 1
    assert rot[0]["RotationType"] == "AUTOMATIC"
    assert rot[0]["KeyMaterialId"] == second
    assert _close(rot[0]["RotationDate"], clock.now() - timedelta(seconds=1), seconds=86400)
    # The schedule moves on by one period.
    status = kms.get_key_rotation_status(KeyId=kid)
    assert status["NextRotationDate"] > clock.now()
    assert status["NextRotationDate"] <= clock.now() + timedelta(days=90)
    # New ciphertexts use the new material; old ones still decrypt with theirs.
    new = kms.encrypt(KeyId=kid, Plaintext=b"after")
    assert kms.decrypt(CiphertextBlob=new["CiphertextBlob"])["KeyMaterialId"] == second
    old = kms.decrypt(CiphertextBlob=old_blob, EncryptionContext={"v": "1"})
    assert (old["Plaintext"], old["KeyMaterialId"]) == (b"before", first)


def test_automatic_rotation_repeats_every_period(kms, clock, key):
    kid = key["KeyId"]
    kms.enable_key_rotation(KeyId=kid, RotationPeriodInDays=90)
    blobs = []
    for _ in range(3):
        blobs.append((kms.encrypt(KeyId=kid, Plaintext=b"%d" % len(blobs))["CiphertextBlob"], _current(kms, kid)))
        clock.advance(days=91)
        kms.describe_key(KeyId=kid)
    ids = [m for _, m in blobs] + [_current(kms, kid)]
    assert len(set(ids)) == 4
    assert [r["RotationType"] for r in _rotations(kms, kid)] == ["AUTOMATIC"] * 3
    for i, (blob, material) in enumerate(blobs):
        out = kms.decrypt(CiphertextBlob=blob)
        assert (out["Plaintext"], out["KeyMaterialId"]) == (b"%d" % i, material)


def test_no_automatic_rotation_when_disabled(kms, clock, key):
    kms.enable_key_rotation(KeyId=key["KeyId"], RotationPeriodInDays=90)
    kms.disable_key_rotation(KeyId=key["KeyId"])
    clock.advance(days=400)
    assert _current(kms, key["KeyId"]) == key["CurrentKeyMaterialId"]
    assert _rotations(kms, key["KeyId"]) == []


def test_rotate_on_demand(kms, clock, key):
    kid = key["KeyId"]
    blob = kms.encrypt(KeyId=kid, Plaintext=b"v1")["CiphertextBlob"]
    resp = kms.rotate_key_on_demand(KeyId=kid)
    assert kid in resp["KeyId"]
    now = _current(kms, kid)
    assert now != key["CurrentKeyMaterialId"]
    rot = _rotations(kms, kid)
    assert [(r["RotationType"], r["KeyMaterialId"]) for r in rot] == [("ON_DEMAND", now)]
    assert _close(rot[0]["RotationDate"], clock.now())
    assert kid in rot[0]["KeyId"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"v1"
    assert kms.generate_data_key(KeyId=kid, KeySpec="AES_256")["KeyMaterialId"] == now
    # On-demand rotation needs automatic rotation neither on nor off.
    assert kms.get_key_rotation_status(KeyId=kid)["KeyRotationEnabled"] is False


def test_rotate_on_demand_does_not_move_schedule(kms, clock, key):
    kms.enable_key_rotation(KeyId=key["KeyId"], RotationPeriodInDays=90)
    before = kms.get_key_rotation_status(KeyId=key["KeyId"])["NextRotationDate"]
    clock.advance(days=10)
    kms.rotate_key_on_demand(KeyId=key["KeyId"])
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["NextRotationDate"] == before


def test_rotate_on_demand_limit_25(raises, kms, key):
    kid = key["KeyId"]
    blobs = []
    for i in range(25):
        blobs.append(kms.encrypt(KeyId=kid, Plaintext=b"%d" % i)["CiphertextBlob"])
        kms.rotate_key_on_demand(KeyId=kid)
    current = _current(kms, kid)
    with raises("LimitExceededException"):
        kms.rotate_key_on_demand(KeyId=kid)
    assert _current(kms, kid) == current
    assert len(_rotations(kms, kid)) == 25
    # Every one of the 26 materials is still usable for its ciphertexts.
    for i, blob in enumerate(blobs):
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"%d" % i


def test_automatic_rotations_do_not_count_against_on_demand_limit(kms, clock, key):
    kms.enable_key_rotation(KeyId=key["KeyId"], RotationPeriodInDays=90)
    clock.advance(days=91)
    kms.describe_key(KeyId=key["KeyId"])
    for _ in range(25):
        kms.rotate_key_on_demand(KeyId=key["KeyId"])
    assert len(_rotations(kms, key["KeyId"])) == 26


def test_list_key_rotations_entries(kms, clock, key, helpers):
    kid = key["KeyId"]
    kms.rotate_key_on_demand(KeyId=kid)
    clock.advance(days=1)
    kms.rotate_key_on_demand(KeyId=kid)
    rot = _rotations(kms, kid)
    assert len(rot) == 2
    assert rot[0]["RotationDate"] < rot[1]["RotationDate"]
    for r in rot:
        assert helpers.MATERIAL_ID_RE.match(r["KeyMaterialId"])
        assert r["RotationType"] == "ON_DEMAND"
        assert r["RotationDate"].tzinfo is not None
    assert rot[1]["KeyMaterialId"] == _current(kms, kid)
    assert key["CurrentKeyMaterialId"] not in {r["KeyMaterialId"] for r in rot}
    # ALL_KEY_MATERIAL adds the first material; exactly one is CURRENT.
    every = _rotations(kms, kid, IncludeKeyMaterial="ALL_KEY_MATERIAL")
    assert len(every) == 3
    assert key["CurrentKeyMaterialId"] in {r["KeyMaterialId"] for r in every}
    states = {r["KeyMaterialId"]: r["KeyMaterialState"] for r in every}
    assert states[_current(kms, kid)] == "CURRENT"
    assert sorted(states.values()) == ["CURRENT", "NON_CURRENT", "NON_CURRENT"]


def test_disable_rotation_keeps_old_material(kms, clock, key):
    kid = key["KeyId"]
    kms.enable_key_rotation(KeyId=kid, RotationPeriodInDays=90)
    old = kms.encrypt(KeyId=kid, Plaintext=b"old")["CiphertextBlob"]
    clock.advance(days=91)
    mid = kms.encrypt(KeyId=kid, Plaintext=b"mid")["CiphertextBlob"]
    current = _current(kms, kid)
    kms.disable_key_rotation(KeyId=kid)
    clock.advance(days=500)
    assert _current(kms, kid) == current
    assert kms.decrypt(CiphertextBlob=old)["Plaintext"] == b"old"
    assert kms.decrypt(CiphertextBlob=mid)["Plaintext"] == b"mid"
    assert len(_rotations(kms, kid)) == 1


def test_reencrypt_moves_old_ciphertext_to_current_material(kms, key):
    kid = key["KeyId"]
    blob = kms.encrypt(KeyId=kid, Plaintext=b"refresh")["CiphertextBlob"]
    kms.rotate_key_on_demand(KeyId=kid)
    out = kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=kid)
    assert out["SourceKeyMaterialId"] == key["CurrentKeyMaterialId"]
    assert out["DestinationKeyMaterialId"] == _current(kms, kid)
    assert kms.decrypt(CiphertextBlob=out["CiphertextBlob"])["KeyMaterialId"] == _current(kms, kid)


def test_rotation_kept_across_cancelled_deletion(kms, key):
    kid = key["KeyId"]
    blob = kms.encrypt(KeyId=kid, Plaintext=b"keep")["CiphertextBlob"]
    kms.rotate_key_on_demand(KeyId=kid)
    kms.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
    kms.cancel_key_deletion(KeyId=kid)
    kms.enable_key(KeyId=kid)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"keep"
    assert len(_rotations(kms, kid)) == 1


def test_no_rotation_while_disabled_then_at_once_when_overdue(kms, clock, key):
    """AWS: a Disabled key does not rotate; re-enabled more than a year after
    its last rotation, it rotates at once."""
    kid = key["KeyId"]
    kms.enable_key_rotation(KeyId=kid)  # yearly
    kms.disable_key(KeyId=kid)
    clock.advance(days=400)
    assert _current(kms, kid) == key["CurrentKeyMaterialId"]
    assert _rotations(kms, kid) == []
    kms.enable_key(KeyId=kid)
    after = kms.encrypt(KeyId=kid, Plaintext=b"x")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=after)["KeyMaterialId"] != key["CurrentKeyMaterialId"]
    assert [r["RotationType"] for r in _rotations(kms, kid)] == ["AUTOMATIC"]


def test_concurrent_use_during_rotations(kms, key):
    """Threads encrypting and decrypting while the key rotates all get their
    own plaintext back."""
    import threading

    kid = key["KeyId"]
    failures = []

    def worker(n):
        try:
            for i in range(15):
                data = b"%d-%d" % (n, i)
                blob = kms.encrypt(KeyId=kid, Plaintext=data, EncryptionContext={"n": str(n)})["CiphertextBlob"]
                if kms.decrypt(CiphertextBlob=blob, EncryptionContext={"n": str(n)})["Plaintext"] != data:
                    failures.append((n, i))
        except Exception as exc:  # reported below
            failures.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for _ in range(5):
        kms.rotate_key_on_demand(KeyId=kid)
    for t in threads:
        t.join(60)
    assert failures == []
    assert len(_rotations(kms, kid)) == 5
