"""AWS's key-state table (reference kms-api.md §2.2), one test per cell for
every operation this engine serves, in the states Enabled, Disabled and
PendingDeletion."""
from __future__ import annotations

import pytest

STATES = ["Enabled", "Disabled", "PendingDeletion"]
OK = None
DISABLED = ("DisabledException", "{arn} is disabled.")
PENDING = ("KMSInvalidStateException", "{arn} is pending deletion.")
NOT_PENDING = ("KMSInvalidStateException", "{arn} is not pending deletion.")


# Every test makes its own keys, so one store serves the whole module.
@pytest.fixture
def kms(shared_store):
    return shared_store.client


@pytest.fixture
def clock(shared_store):
    return shared_store.clock


@pytest.fixture(scope="module")
def other_key(shared_store):
    """An Enabled key the calls move data to and from (never changed)."""
    kms = shared_store.client
    kid = kms.create_key()["KeyMetadata"]["KeyId"]
    return kid, kms.encrypt(KeyId=kid, Plaintext=b"other")["CiphertextBlob"]


class Setup:
    """A key under test plus what the calls need, made while it was Enabled."""

    def __init__(self, kms, helpers, other_key, op=None):
        self.kms = kms
        meta = kms.create_key(Description="state",
                              Tags=[{"TagKey": "keep", "TagValue": "1"}])["KeyMetadata"]
        self.kid, self.arn = meta["KeyId"], meta["Arn"]
        self.other, self.other_blob = other_key
        self.blob = kms.encrypt(KeyId=self.kid, Plaintext=b"state table",
                                EncryptionContext={"t": "1"})["CiphertextBlob"]
        self.alias = helpers.unique_alias("state")
        kms.create_alias(AliasName=self.alias, TargetKeyId=self.kid)
        # AWS allows 50 aliases per key, so only the cell that needs an alias
        # on the shared key makes one.
        self.other_alias = None
        if op == "UpdateAlias(destination)":
            self.other_alias = helpers.unique_alias("state-other")
            kms.create_alias(AliasName=self.other_alias, TargetKeyId=self.other)


def _calls(s: Setup):
    k = s.kms
    return {
        # cryptographic operations
        "Encrypt": lambda: k.encrypt(KeyId=s.kid, Plaintext=b"x"),
        "Encrypt(alias)": lambda: k.encrypt(KeyId=s.alias, Plaintext=b"x"),
        "Decrypt": lambda: k.decrypt(CiphertextBlob=s.blob, EncryptionContext={"t": "1"}),
        "ReEncrypt(source)": lambda: k.re_encrypt(CiphertextBlob=s.blob,
                                                  SourceEncryptionContext={"t": "1"},
                                                  DestinationKeyId=s.other),
        "ReEncrypt(destination)": lambda: k.re_encrypt(CiphertextBlob=s.other_blob,
                                                       DestinationKeyId=s.kid),
        "GenerateDataKey": lambda: k.generate_data_key(KeyId=s.kid, KeySpec="AES_256"),
        "GenerateDataKeyWithoutPlaintext": lambda: k.generate_data_key_without_plaintext(
            KeyId=s.kid, NumberOfBytes=16),
        # always allowed
        "DescribeKey": lambda: k.describe_key(KeyId=s.kid),
        "ListResourceTags": lambda: k.list_resource_tags(KeyId=s.kid),
        "ListAliases": lambda: k.list_aliases(KeyId=s.kid),
        "DeleteAlias": lambda: k.delete_alias(AliasName=s.alias),
        "GetKeyRotationStatus": lambda: k.get_key_rotation_status(KeyId=s.kid),
        "UpdateAlias(source)": lambda: k.update_alias(AliasName=s.alias, TargetKeyId=s.other),
        # management
        "CreateAlias": lambda: k.create_alias(AliasName=s.alias + "-2", TargetKeyId=s.kid),
        "UpdateAlias(destination)": lambda: k.update_alias(AliasName=s.other_alias,
                                                           TargetKeyId=s.kid),
        "UpdateKeyDescription": lambda: k.update_key_description(KeyId=s.kid, Description="d"),
        "TagResource": lambda: k.tag_resource(KeyId=s.kid, Tags=[{"TagKey": "n", "TagValue": "v"}]),
        "UntagResource": lambda: k.untag_resource(KeyId=s.kid, TagKeys=["keep"]),
        "ScheduleKeyDeletion": lambda: k.schedule_key_deletion(KeyId=s.kid, PendingWindowInDays=7),
        "EnableKey": lambda: k.enable_key(KeyId=s.kid),
        "DisableKey": lambda: k.disable_key(KeyId=s.kid),
        "CancelKeyDeletion": lambda: k.cancel_key_deletion(KeyId=s.kid),
        "EnableKeyRotation": lambda: k.enable_key_rotation(KeyId=s.kid),
        "DisableKeyRotation": lambda: k.disable_key_rotation(KeyId=s.kid),
        "RotateKeyOnDemand": lambda: k.rotate_key_on_demand(KeyId=s.kid),
    }


CRYPTO = {"Enabled": OK, "Disabled": DISABLED, "PendingDeletion": PENDING}
ALWAYS = {"Enabled": OK, "Disabled": OK, "PendingDeletion": OK}
MANAGE = {"Enabled": OK, "Disabled": OK, "PendingDeletion": PENDING}
ROTATION = {"Enabled": OK, "Disabled": DISABLED, "PendingDeletion": PENDING}

TABLE = {
    "Encrypt": CRYPTO,
    "Encrypt(alias)": CRYPTO,
    "Decrypt": CRYPTO,
    "ReEncrypt(source)": CRYPTO,
    "ReEncrypt(destination)": CRYPTO,
    "GenerateDataKey": CRYPTO,
    "GenerateDataKeyWithoutPlaintext": CRYPTO,
    "DescribeKey": ALWAYS,
    "ListResourceTags": ALWAYS,
    "ListAliases": ALWAYS,
    "DeleteAlias": ALWAYS,
    "GetKeyRotationStatus": ALWAYS,
    "UpdateAlias(source)": ALWAYS,
    "CreateAlias": MANAGE,
    "UpdateAlias(destination)": MANAGE,
    "UpdateKeyDescription": MANAGE,
    "TagResource": MANAGE,
    "UntagResource": MANAGE,
    "ScheduleKeyDeletion": MANAGE,
    "EnableKey": MANAGE,
    "DisableKey": MANAGE,
    "CancelKeyDeletion": {"Enabled": NOT_PENDING, "Disabled": NOT_PENDING, "PendingDeletion": OK},
    "EnableKeyRotation": ROTATION,
    "DisableKeyRotation": ROTATION,
    "RotateKeyOnDemand": ROTATION,
}

CELLS = [(op, state) for op in TABLE for state in STATES]


@pytest.mark.parametrize("op,state", CELLS, ids=[f"{o}-{s}" for o, s in CELLS])
def test_key_state_table(kms, helpers, raises, other_key, op, state):
    s = Setup(kms, helpers, other_key, op)
    helpers.put_in_state(kms, s.kid, state)
    expected = TABLE[op][state]
    call = _calls(s)[op]
    if expected is OK:
        resp = call()
        assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
        return
    code, message = expected
    with raises(code, message=message.format(arn=s.arn)):
        call()
    # A refused call changes nothing.
    meta = kms.describe_key(KeyId=s.kid)["KeyMetadata"]
    assert meta["KeyState"] == state
    assert meta["Description"] == "state"
    assert kms.list_resource_tags(KeyId=s.kid)["Tags"] == [{"TagKey": "keep", "TagValue": "1"}]
    assert s.alias in {a["AliasName"] for a in kms.list_aliases(KeyId=s.kid)["Aliases"]}
    if s.other_alias:
        assert s.other_alias in {a["AliasName"] for a in kms.list_aliases(KeyId=s.other)["Aliases"]}


def test_crypto_results_in_allowed_states(kms, helpers, other_key):
    """Enabled is the only state where crypto works; results are real."""
    s = Setup(kms, helpers, other_key)
    out = kms.decrypt(CiphertextBlob=s.blob, EncryptionContext={"t": "1"})
    assert out["Plaintext"] == b"state table"
    moved = kms.re_encrypt(CiphertextBlob=s.other_blob, DestinationKeyId=s.kid)
    assert kms.decrypt(CiphertextBlob=moved["CiphertextBlob"])["Plaintext"] == b"other"


def test_rotation_status_reports_false_while_pending_deletion(kms, helpers, other_key):
    s = Setup(kms, helpers, other_key)
    kms.enable_key_rotation(KeyId=s.kid, RotationPeriodInDays=180)
    kms.schedule_key_deletion(KeyId=s.kid, PendingWindowInDays=7)
    assert kms.get_key_rotation_status(KeyId=s.kid)["KeyRotationEnabled"] is False
    kms.cancel_key_deletion(KeyId=s.kid)
    status = kms.get_key_rotation_status(KeyId=s.kid)
    assert status["KeyRotationEnabled"] is True
    assert status["RotationPeriodInDays"] == 180


def test_disabled_key_decrypts_again_once_enabled(kms, helpers, other_key):
    s = Setup(kms, helpers, other_key)
    kms.disable_key(KeyId=s.kid)
    with pytest.raises(kms.exceptions.DisabledException):
        kms.decrypt(CiphertextBlob=s.blob, EncryptionContext={"t": "1"})
    kms.enable_key(KeyId=s.kid)
    assert kms.decrypt(CiphertextBlob=s.blob, EncryptionContext={"t": "1"})["Plaintext"] == b"state table"
