"""``test_moto_style.py`` runs unchanged under moto's ``mock_aws`` but for its
import line; the tests that fail there are exactly the places where moto
departs from AWS (each one named here with what moto does instead), so a suite
migrated from moto meets only AWS's behaviour (docs/testing.md)."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

SUITE = Path(__file__).with_name("test_moto_style.py")
IMPORT_LINE = "from kms_core.testing import mock_kms  # with moto: from moto import mock_aws as mock_kms"

# test -> what moto 5.2.1 does where AWS does what the test asserts
MOTO_DEPARTS = {
    "test_create_key": "KeyMetadata has no MultiRegion",
    "test_create_key_malformed_policy": "accepts any text as a key policy",
    "test_encrypt_decrypt_roundtrip": "Decrypt's response has no EncryptionAlgorithm",
    "test_decrypt_with_other_key_id": "AccessDeniedException instead of IncorrectKeyException",
    "test_decrypt_garbage": "AccessDeniedException instead of InvalidCiphertextException",
    "test_encrypt_with_disabled_key": "encrypts with a disabled key",
    "test_list_aliases_predefined_aws_aliases_have_no_target": "predefined aliases carry a TargetKeyId",
    "test_alias_reserved_prefix": "accepts alias/aws/foo",
    "test_aws_managed_key": "the key behind alias/aws/s3 has KeyManager CUSTOMER",
    "test_list_keys_paginates": "ignores Limit",
    "test_tag_aws_prefix_refused": "accepts tag keys starting with aws:",
    "test_rotation_period_echoed": "ignores RotationPeriodInDays",
    "test_enable_rotation_on_disabled_key": "enables rotation on a disabled key",
    "test_grant_name_is_idempotent": "a second grant for the same Name",
    "test_schedule_and_cancel_key_deletion": "ScheduleKeyDeletion returns the key id, not its ARN",
    "test_pending_window_out_of_range": "accepts a 3-day window",
    "test_encrypt_with_key_pending_deletion": "encrypts with a key pending deletion",
    "test_put_key_policy_that_denies_encrypt": "does not evaluate key policies",
}


def test_the_suite_differs_from_a_moto_suite_by_its_import_line_only():
    lines = SUITE.read_text().splitlines()
    assert lines.count(IMPORT_LINE) == 1
    assert not any("kms_core" in line for line in lines if line != IMPORT_LINE)


@pytest.mark.slow
def test_under_moto_only_moto_departures_fail(pytester, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    source = SUITE.read_text().replace(IMPORT_LINE, "from moto import mock_aws as mock_kms")
    pytester.makepyfile(test_under_moto=source)
    result = pytester.runpytest("-p", "no:xdist", "-p", "no:cacheprovider", "-p", "no:benchmark", "-q")
    outcomes = result.parseoutcomes()
    failed = {line.split("::")[1].split(" ")[0] for line in result.outlines if line.startswith("FAILED ")}
    assert failed == set(MOTO_DEPARTS), result.stdout.str()[-3000:]
    assert outcomes["passed"] > 15  # the rest of the suite holds under moto too
