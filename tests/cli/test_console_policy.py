"""`kms create-key --key-administrators … --key-users …` writes the console's policy,
and the engine then separates administration from use."""
import json

import pytest

import kms_core
from kms_core.cli import main

ADMIN = "arn:aws:iam::111122223333:user/admin"
USER = "arn:aws:iam::111122223333:user/app"


def test_console_setup_steps(kms_home, capsys):
    assert main(["create-key", "--description", "orders", "--key-administrators", ADMIN,
                 "--key-users", USER, "--query", "KeyMetadata.KeyId", "--output", "text"]) == 0
    key = capsys.readouterr().out.strip()
    policy = json.loads(kms_core.client().get_key_policy(KeyId=key)["Policy"])
    sids = [s["Sid"] for s in policy["Statement"]]
    assert sids == ["Allow access for Key Administrators", "Allow use of the key",
                    "Allow attachment of persistent resources"]
    admin, user = kms_core.client(principal=ADMIN), kms_core.client(principal=USER)
    blob = user.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    with pytest.raises(admin.exceptions.AccessDeniedException):
        admin.decrypt(CiphertextBlob=blob)
    with pytest.raises(user.exceptions.AccessDeniedException):
        user.disable_key(KeyId=key)
    admin.disable_key(KeyId=key)


def test_console_options_refuse_mixed_or_bad_input(kms_home, capsys):
    assert main(["create-key", "--key-users", "bob"]) == 255
    assert main(["create-key", "--key-users", USER, "--policy", "{}"]) == 255
    err = capsys.readouterr().err
    assert "--policy cannot be combined" in err and "Traceback" not in err
