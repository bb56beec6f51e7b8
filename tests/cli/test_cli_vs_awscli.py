"""`kms --endpoint-url M ...` and `aws kms --endpoint-url M ...` against the same moto server
print the same bytes and exit with the same codes; the embedded engine's output has AWS's shapes."""
from __future__ import annotations

import base64

import boto3
import pytest

from .test_cli_process import _imports_after


@pytest.fixture
def moto_key(moto_url, aws_env):
    kms = boto3.client("kms", endpoint_url=moto_url, region_name="us-east-1")
    key_id = kms.create_key(Description="compare", Tags=[{"TagKey": "t", "TagValue": "v"}])["KeyMetadata"]["KeyId"]
    return key_id


@pytest.mark.parametrize("extra", [
    (),
    ("--output", "text"),
    ("--output", "table"),
    ("--query", "KeyMetadata.[KeyId,Enabled,CreationDate]"),
    ("--query", "KeyMetadata.EncryptionAlgorithms", "--output", "text"),
    ("--query", "KeyMetadata.Description", "--output", "json"),
])
def test_describe_key_output_is_byte_identical(cli, aws, moto_url, moto_key, extra):
    args = ("describe-key", "--key-id", moto_key, "--endpoint-url", moto_url, *extra)
    ours, theirs = cli(*args), aws("kms", *args)
    assert theirs.rc == 0, theirs
    assert (ours.rc, ours.out) == (theirs.rc, theirs.out)


def test_list_commands_and_tokens_are_identical(cli, aws, moto_url, moto_key):
    for args in (("list-resource-tags", "--key-id", moto_key), ("list-keys", "--max-items", "1"),
                 ("list-keys", "--max-items", "1", "--output", "text"), ("list-aliases", "--max-items", "2"),
                 ("list-aliases", "--output", "table"), ("list-keys", "--output", "text", "--query", "Keys[].KeyId")):
        full = (*args, "--endpoint-url", moto_url)
        ours, theirs = cli(*full), aws("kms", *full)
        assert theirs.rc == 0, theirs
        assert ours.out == theirs.out, args


def test_service_error_line_and_exit_code_match(cli, aws, moto_url):
    args = ("describe-key", "--key-id", "alias/does-not-exist", "--endpoint-url", moto_url)
    ours, theirs = cli(*args), aws("kms", *args)
    assert ours.rc == theirs.rc == 255
    # awscli writes a blank line first; we print exactly the one line.
    assert ours.err == theirs.err.lstrip("\n")
    assert ours.err.startswith("An error occurred (NotFoundException) when calling the DescribeKey operation: ")


@pytest.mark.parametrize("args", [
    ("encrypt", "--plaintext", "x"),                       # missing required option
    ("describe-key", "--key-id", "k", "--bogus", "1"),     # unknown option
    ("encrypt", "--key-id", "k", "--plaintext", "x", "--encryption-context", "a"),  # bad shorthand
    ("no-such-command",),
    ("generate-random", "--number-of-bytes", "abc"),
])
def test_command_line_errors_exit_like_awscli(cli, aws, moto_url, args):
    full = (*args, "--endpoint-url", moto_url)
    ours, theirs = cli(*full), aws("kms", *full)
    assert ours.rc == theirs.rc
    assert ours.out == theirs.out == ""


def test_blob_conventions_interoperate(cli, aws, moto_url, moto_key, tmp_path):
    """A plain-text --plaintext is the text's bytes in both CLIs; fileb:// is raw; blobs print as base64."""
    enc = aws("kms", "encrypt", "--key-id", moto_key, "--plaintext", "hello", "--endpoint-url", moto_url,
              "--output", "text", "--query", "CiphertextBlob")
    (tmp_path / "c.bin").write_bytes(base64.b64decode(enc.out))
    dec_args = ("decrypt", "--ciphertext-blob", f"fileb://{tmp_path}/c.bin", "--endpoint-url", moto_url,
                "--output", "text", "--query", "Plaintext")
    ours, theirs = cli(*dec_args), aws("kms", *dec_args)
    assert ours.out == theirs.out == base64.b64encode(b"hello").decode() + "\n"
    raw = bytes(range(200))
    (tmp_path / "raw").write_bytes(raw)
    enc2 = cli("encrypt", "--key-id", moto_key, "--plaintext", f"fileb://{tmp_path}/raw", "--endpoint-url",
               moto_url, "--output", "text", "--query", "CiphertextBlob")
    (tmp_path / "c2.bin").write_bytes(base64.b64decode(enc2.out))
    back = aws("kms", "decrypt", "--ciphertext-blob", f"fileb://{tmp_path}/c2.bin", "--endpoint-url", moto_url,
               "--output", "text", "--query", "Plaintext")
    assert base64.b64decode(back.out) == raw


def _shape(value):
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


@pytest.mark.parametrize("command", [
    ("create-key", "--description", "d", "--tags", "TagKey=a,TagValue=b"),
    ("generate-data-key", "--key-id", "{key}", "--key-spec", "AES_256", "--encryption-context", "purpose=test"),
    ("encrypt", "--key-id", "{key}", "--plaintext", "hi"),
    ("generate-random", "--number-of-bytes", "8"),
    ("list-keys",),
    ("get-key-rotation-status", "--key-id", "{key}"),
])
def test_embedded_output_has_the_same_shape_as_aws_against_moto(cli, aws, moto_url, moto_key, command):
    local_key = cli("create-key", "--query", "KeyMetadata.KeyId", "--output", "text").out.strip()
    ours = cli(*[a.format(key=local_key) for a in command]).json
    theirs = aws("kms", *[a.format(key=moto_key) for a in command], "--endpoint-url", moto_url).json
    ours_shape, theirs_shape = _shape(ours), _shape(theirs)

    def common(a, b):  # every field aws printed is there in ours, with the same JSON type
        if isinstance(b, dict):
            assert isinstance(a, dict)
            for k, v in b.items():
                if k == "SigningAlgorithms" and v == []:
                    continue  # moto adds an empty list that AWS omits for symmetric keys
                assert k in a, k
                common(a[k], v)
        elif isinstance(b, list):
            assert isinstance(a, list)
            if b and a:
                common(a[0], b[0])
        else:
            assert a == b or {a, b} <= {"int", "float"}

    common(ours_shape, theirs_shape)


def test_profile_and_region_reach_the_remote_client(cli, moto_url, moto_key, tmp_path, monkeypatch):
    creds = tmp_path / "credentials"
    creds.write_text("[p1]\naws_access_key_id = a\naws_secret_access_key = b\n")
    config = tmp_path / "config"
    config.write_text("[profile p1]\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    ok = cli("--profile", "p1", "describe-key", "--key-id", moto_key, "--endpoint-url", moto_url)
    assert ok.rc == 0 and ok.json["KeyMetadata"]["KeyId"] == moto_key
    # moto keeps keys per region: the same id is unknown in another one.
    other = cli("--profile", "p1", "--region", "eu-west-1", "describe-key", "--key-id", moto_key,
                "--endpoint-url", moto_url)
    assert other.rc == 255 and "NotFoundException" in other.err
    missing = cli("--profile", "nope", "list-keys", "--endpoint-url", moto_url)
    assert missing.rc == 255 and missing.err == "The config profile (nope) could not be found\n"


def test_region_option_on_the_embedded_engine(cli):
    arn = cli("--region", "eu-west-1", "create-key", "--query", "KeyMetadata.Arn", "--output", "text").out
    assert arn.startswith("arn:aws:kms:eu-west-1:")


def test_remote_commands_do_not_load_the_embedded_engine(kms_home, moto_url):
    remote = _imports_after(["list-keys", "--endpoint-url", moto_url],
                            env={"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"})
    assert "boto3" in remote and "sqlalchemy" not in remote
