"""Option values: fileb:// and file://, blobs given as text, shorthand and JSON, lists, booleans."""
from __future__ import annotations

import base64
import json

import pytest


@pytest.fixture
def key(cli):
    key_id = cli("create-key", "--query", "KeyMetadata.KeyId", "--output", "text").out.strip()
    assert cli("create-alias", "--alias-name", "alias/p", "--target-key-id", key_id).rc == 0
    return key_id


def _roundtrip(cli, tmp_path, *encrypt_args, decrypt_extra=()):
    enc = cli("encrypt", "--key-id", "alias/p", *encrypt_args, "--query", "CiphertextBlob", "--output", "text")
    assert enc.rc == 0, enc
    blob = tmp_path / "c.bin"
    blob.write_bytes(base64.b64decode(enc.out))
    dec = cli("decrypt", "--ciphertext-blob", f"fileb://{blob}", *decrypt_extra, "--query", "Plaintext",
              "--output", "text")
    assert dec.rc == 0, dec
    return base64.b64decode(dec.out)


def test_plain_text_blob_is_its_utf8_bytes(cli, key, tmp_path):
    # AWS CLI v1: `--plaintext hello` sends the bytes of "hello" (v2 would expect base64).
    assert _roundtrip(cli, tmp_path, "--plaintext", "héllo wörld") == "héllo wörld".encode()


def test_base64_binary_format_decodes_text_blobs(cli, key, tmp_path):
    raw = bytes(range(256))
    got = _roundtrip(cli, tmp_path, "--plaintext", base64.b64encode(raw).decode(), "--cli-binary-format", "base64")
    assert got == raw
    bad = cli("encrypt", "--key-id", "alias/p", "--plaintext", "not base64!", "--cli-binary-format", "base64")
    assert bad.rc == 255 and "Error parsing parameter '--plaintext': Invalid base64" in bad.err


def test_fileb_is_raw_bytes_and_file_is_text(cli, key, tmp_path):
    raw = bytes(range(256))
    (tmp_path / "raw.bin").write_bytes(raw)
    assert _roundtrip(cli, tmp_path, "--plaintext", f"fileb://{tmp_path}/raw.bin") == raw
    (tmp_path / "t.txt").write_text("line one\nline two\n", encoding="utf-8")
    assert _roundtrip(cli, tmp_path, "--plaintext", f"file://{tmp_path}/t.txt") == b"line one\nline two\n"
    # A binary file through file:// is refused with awscli's advice, not mangled.
    res = cli("encrypt", "--key-id", "alias/p", "--plaintext", f"file://{tmp_path}/raw.bin")
    assert res.rc == 255
    assert "Error parsing parameter '--plaintext': Unable to load paramfile" in res.err
    assert "please use the fileb:// prefix" in res.err
    missing = cli("encrypt", "--key-id", "alias/p", "--plaintext", f"fileb://{tmp_path}/nope")
    assert missing.rc == 255 and "Unable to load paramfile fileb://" in missing.err
    assert missing.err.count("\n") == 1


def test_encryption_context_shorthand_json_and_file(cli, key, tmp_path):
    ctx = {"purpose": "test", "team": "a b", "x": "1,2"}
    (tmp_path / "ctx.json").write_text(json.dumps(ctx))
    forms = [
        ("--encryption-context", 'purpose=test,team=a b,x="1,2"'),
        ("--encryption-context", json.dumps(ctx)),
        ("--encryption-context", f"file://{tmp_path}/ctx.json"),
    ]
    for enc_form in forms:
        for dec_form in forms:
            assert _roundtrip(cli, tmp_path, "--plaintext", "s", *enc_form, decrypt_extra=dec_form) == b"s"
    # A different context must not decrypt.
    enc = cli("encrypt", "--key-id", "alias/p", "--plaintext", "s", "--encryption-context", "purpose=test",
              "--query", "CiphertextBlob", "--output", "text")
    (tmp_path / "c.bin").write_bytes(base64.b64decode(enc.out))
    wrong = cli("decrypt", "--ciphertext-blob", f"fileb://{tmp_path}/c.bin", "--encryption-context", "purpose=prod")
    assert wrong.rc == 255
    assert wrong.err == "An error occurred (InvalidCiphertextException) when calling the Decrypt operation: \n"


def test_shorthand_and_json_errors_are_awscli_style(cli, key):
    res = cli("encrypt", "--key-id", "alias/p", "--plaintext", "s", "--encryption-context", "purpose")
    assert res.rc == 255
    assert res.err == ("Error parsing parameter '--encryption-context': Expected: '=', received: 'EOF' for input:\n"
                       "purpose\n       ^\n")
    res = cli("encrypt", "--key-id", "alias/p", "--plaintext", "s", "--encryption-context", '{"a": ')
    assert res.rc == 255 and res.err.startswith("Error parsing parameter '--encryption-context': Invalid JSON: ")
    # A list where the map wants a string: botocore's client-side validation message.
    res = cli("encrypt", "--key-id", "alias/p", "--plaintext", "s", "--encryption-context", "a=b,c")
    assert res.rc == 255
    assert res.err.startswith("Parameter validation failed:\nInvalid type for parameter EncryptionContext.a")


def test_tags_lists_of_structures_and_lists_of_strings(cli, tmp_path):
    made = cli("create-key", "--description", "tagged", "--tags", "TagKey=a,TagValue=b", "TagKey=c,TagValue=d")
    assert made.rc == 0, made
    key_id = made.json["KeyMetadata"]["KeyId"]
    tags = cli("list-resource-tags", "--key-id", key_id).json["Tags"]
    assert sorted((t["TagKey"], t["TagValue"]) for t in tags) == [("a", "b"), ("c", "d")]
    # JSON form of the same list, and a list of strings for untag.
    assert cli("tag-resource", "--key-id", key_id, "--tags", '[{"TagKey": "e", "TagValue": "f"}]').rc == 0
    assert cli("untag-resource", "--key-id", key_id, "--tag-keys", "a", "c").rc == 0
    tags = cli("list-resource-tags", "--key-id", key_id, "--output", "text").out
    assert tags == "TAGS\te\tf\n"
    # Missing member in a structure: botocore's message, exit 255.
    res = cli("tag-resource", "--key-id", key_id, "--tags", "TagKey=z")
    assert res.rc == 255 and 'Missing required parameter in Tags[0]: "TagValue"' in res.err


def test_integers_booleans_and_enums(cli, key):
    rnd = cli("generate-random", "--number-of-bytes", "17", "--query", "Plaintext", "--output", "text")
    assert len(base64.b64decode(rnd.out)) == 17
    bad = cli("generate-random", "--number-of-bytes", "abc")
    assert bad.rc == 255 and bad.err == "Error parsing parameter '--number-of-bytes': expected an integer, received: 'abc'\n"
    low = cli("generate-random", "--number-of-bytes", "0")
    assert low.rc == 255
    assert low.err == "Parameter validation failed:\nInvalid value for parameter NumberOfBytes, value: 0, valid min value: 1\n"
    high = cli("generate-random", "--number-of-bytes", "1025")  # the service's limit, not botocore's
    assert high.rc == 255 and "(ValidationException) when calling the GenerateRandom operation" in high.err
    enum = cli("generate-data-key", "--key-id", "alias/p", "--key-spec", "AES_512")
    assert enum.rc == 255 and "ValidationException" in enum.err
    # Booleans are flags with a --no- form; both parse.
    made = cli("create-key", "--no-multi-region", "--query", "KeyMetadata.MultiRegion", "--output", "text")
    assert made.rc == 0 and made.out == "False\n"


def test_cli_input_json_and_skeleton(cli, key, tmp_path):
    skel = cli("encrypt", "--generate-cli-skeleton")
    assert skel.rc == 0
    assert set(skel.json) == {"KeyId", "Plaintext", "EncryptionContext", "GrantTokens", "EncryptionAlgorithm", "DryRun"}
    doc = tmp_path / "in.json"
    doc.write_text(json.dumps({"KeyId": "alias/p", "EncryptionContext": {"k": "v"}}))
    # --cli-input-json supplies the required --key-id; the command line adds the rest.
    enc = cli("encrypt", "--cli-input-json", f"file://{doc}", "--plaintext", "p", "--query", "KeyId", "--output", "text")
    assert enc.rc == 0 and enc.out.strip().endswith(key)
    bad = cli("encrypt", "--cli-input-json", "[1]", "--plaintext", "p")
    assert bad.rc == 255 and "--cli-input-json" in bad.err


def test_usage_errors_exit_2_and_unknown_options_255(cli):
    missing = cli("encrypt", "--plaintext", "x")
    assert missing.rc == 2
    assert missing.err.startswith("usage: kms [options] <command> [parameters]")
    assert missing.err.endswith("kms: error: the following arguments are required: --key-id\n")
    unknown = cli("describe-key", "--key-id", "k", "--bogus", "1")
    assert unknown.rc == 255 and unknown.err.endswith("Unknown options: --bogus, 1\n")
    nocmd = cli("encrpyt")
    assert nocmd.rc == 2 and "Invalid choice: 'encrpyt', maybe you meant:" in nocmd.err and "* encrypt" in nocmd.err
    assert cli().rc == 2
    badout = cli("list-keys", "--output", "yaml")
    assert badout.rc == 2 and "argument --output: invalid choice" in badout.err
    badq = cli("list-keys", "--query", "Keys[")
    assert badq.rc == 255 and badq.err.startswith("Bad value for --query Keys[: ")
    for res in (missing, unknown, nocmd, badout, badq):
        assert "Traceback" not in res.err and res.out == ""


def test_cli_input_json_blobs_are_text_bytes(cli, key, tmp_path):
    doc = tmp_path / "enc.json"
    doc.write_text(json.dumps({"KeyId": "alias/p", "Plaintext": "from json"}))
    enc = cli("encrypt", "--cli-input-json", f"file://{doc}", "--query", "CiphertextBlob", "--output", "text")
    assert enc.rc == 0, enc
    (tmp_path / "c.bin").write_bytes(base64.b64decode(enc.out))
    dec = cli("decrypt", "--ciphertext-blob", f"fileb://{tmp_path}/c.bin", "--query", "Plaintext", "--output", "text")
    assert base64.b64decode(dec.out) == b"from json"


def test_undecodable_command_line_bytes_are_kept(kms_proc, cli, key, tmp_path):
    import os

    raw = b"caf\xe9 \xff"  # not UTF-8: reaches Python as surrogate escapes
    enc = kms_proc(os.fsdecode(b"encrypt"), "--key-id", "alias/p", "--plaintext", os.fsdecode(raw),
                   "--query", "CiphertextBlob", "--output", "text")
    assert enc.rc == 0, enc
    (tmp_path / "c.bin").write_bytes(base64.b64decode(enc.out))
    dec = cli("decrypt", "--ciphertext-blob", f"fileb://{tmp_path}/c.bin", "--query", "Plaintext", "--output", "text")
    assert base64.b64decode(dec.out) == raw


@pytest.mark.parametrize("args, code, operation", [
    (("generate-random", "--number-of-bytes", "1025"), "ValidationException", "GenerateRandom"),
    (("generate-data-key", "--key-id", "alias/p", "--key-spec", "AES_512"), "ValidationException", "GenerateDataKey"),
    (("describe-key", "--key-id", "alias/none"), "NotFoundException", "DescribeKey"),
    (("create-alias", "--alias-name", "alias/aws/x", "--target-key-id", "alias/none"), None, "CreateAlias"),
])
def test_service_errors_are_the_aws_cli_line_and_nothing_else(cli, args, code, operation):
    # The AWS CLI prints exactly one line per service error, with no class-name prefix
    # (a prefix like "ValidationException: An error occurred …" used to leak for codes
    # outside the model's exception list).
    res = cli(*args)
    assert res.rc == 255 and res.out == ""
    assert res.err.startswith("An error occurred (") and res.err.count("\n") == 1
    assert f"when calling the {operation} operation: " in res.err
    if code is not None:
        assert res.err.startswith(f"An error occurred ({code}) ")
