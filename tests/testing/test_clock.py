"""Clocks: the engine's time is the real time unless a test asks otherwise."""
from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import boto3
import freezegun
import pytest
import time_machine

from kms_core.clock import FakeClock, SystemClock, WallClock, true_time
from kms_core.testing import mock_kms

PAST = datetime(2020, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("freeze", [
    lambda: freezegun.freeze_time(PAST),
    lambda: time_machine.travel(PAST, tick=False),
], ids=["freezegun", "time-machine"])
def test_system_clock_ignores_frozen_time(freeze):
    before = time.time()
    with freeze():
        assert time.time() < before - 86400  # the process's time is frozen in 2020
        assert SystemClock().timestamp() >= before
        assert SystemClock().now().year >= 2026
        assert true_time() >= before
        assert WallClock().now().year == 2020  # the clock that follows, on request


@pytest.mark.parametrize("freeze", [
    lambda: freezegun.freeze_time(PAST),
    lambda: time_machine.travel(PAST, tick=False),
], ids=["freezegun", "time-machine"])
def test_key_scheduled_in_a_frozen_past_is_not_gone_afterwards(freeze):
    # The bug: the engine read the frozen clock, so DeletionDate was in 2020 and the
    # key was deleted as soon as the test returned to real time.
    with mock_kms():
        kms = boto3.client("kms", region_name="us-east-1")
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        with freeze():
            when = kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)["DeletionDate"]
        assert when > datetime.now(UTC) + timedelta(days=6)
        assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingDeletion"


def test_wall_clock_follows_frozen_time_when_asked():
    with mock_kms(clock=WallClock()):
        kms = boto3.client("kms", region_name="us-east-1")
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        with freezegun.freeze_time(PAST):
            assert kms.schedule_key_deletion(KeyId=key_id)["DeletionDate"].year == 2020
        with pytest.raises(kms.exceptions.NotFoundException):
            kms.describe_key(KeyId=key_id)  # 30 days after 2020-01-01 has long passed


def test_fake_clock_drives_automatic_rotation():
    clock = FakeClock(datetime(2026, 3, 1, tzinfo=UTC))
    with mock_kms(clock=clock):
        kms = boto3.client("kms", region_name="us-east-1")
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        old = kms.encrypt(KeyId=key_id, Plaintext=b"before")["CiphertextBlob"]
        kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=90)
        assert kms.get_key_rotation_status(KeyId=key_id)["NextRotationDate"] == clock.now() + timedelta(days=90)
        assert kms.list_key_rotations(KeyId=key_id)["Rotations"] == []
        clock.advance(days=90, seconds=1)
        rotations = kms.list_key_rotations(KeyId=key_id)["Rotations"]
        assert [r["RotationType"] for r in rotations] == ["AUTOMATIC"]
        new = kms.encrypt(KeyId=key_id, Plaintext=b"after")["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=old)["Plaintext"] == b"before"
        assert kms.decrypt(CiphertextBlob=new)["Plaintext"] == b"after"


def test_fake_clock_drives_the_deletion_window():
    clock = FakeClock()
    with mock_kms(clock=clock):
        kms = boto3.client("kms", region_name="us-east-1")
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        deletion = kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)["DeletionDate"]
        assert deletion == clock.now() + timedelta(days=7)
        clock.set(deletion - timedelta(seconds=1))
        assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingDeletion"
        clock.advance(seconds=2)
        with pytest.raises(kms.exceptions.NotFoundException):
            kms.describe_key(KeyId=key_id)


def test_fake_clock_api():
    clock = FakeClock(datetime(2026, 1, 1))  # naive: taken as UTC
    assert clock.now().tzinfo is not None
    assert clock.advance(timedelta(hours=1), minutes=30) == datetime(2026, 1, 1, 1, 30, tzinfo=UTC)
    with pytest.raises(ValueError):
        clock.advance(days=-1)
    clock.set(datetime(2025, 1, 1))
    assert clock.timestamp() == datetime(2025, 1, 1, tzinfo=UTC).timestamp()
    assert "2025-01-01" in repr(clock)
