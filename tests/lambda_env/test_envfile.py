"""The kms-env v1 file format: known-answer vectors from
docs/encrypted-env-format.md, round trips, the tamper matrix, fuzzing."""
from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrations.lambda_env import envfile, errors
from integrations.lambda_env.envfile import decrypt_env_file, encrypt_env_file, parse

DOC = Path(__file__).resolve().parents[2] / "docs" / "encrypted-env-format.md"
MAC_KEY = bytes(range(32))
WRAPPED = b"\x03" * 64
KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
V1_ENTRIES = [("DB_PASSWORD", base64.b64encode(b"\x01" * 40).decode()),
              ("API_TOKEN", base64.b64encode(b"\x02" * 48).decode())]
V1_MAC = "0b72239da730c5a06fc9ce28bf9b92da53ae97580d6c70378d8c2d9a2ecedcb5"
V2_MAC = "0b33eeaa8f1a924bdb21b17eebee99e93e3d25c4c003a3af012955f9aaed2fe1"


def doc_blocks() -> list[str]:
    return re.findall(r"```\n(.*?)```", DOC.read_text(), re.S)


def test_known_answer_vector_1():
    header = envfile.header_text({"LambdaFunctionName": "orders-api"}, KEY_ARN)
    m = envfile.mac_input(header, V1_ENTRIES, WRAPPED)
    blocks = doc_blocks()
    assert m.hex() in [b.strip() for b in blocks]
    mac = envfile.compute_mac(MAC_KEY, header, V1_ENTRIES, WRAPPED)
    assert mac.hex() == V1_MAC and V1_MAC in DOC.read_text()
    text = envfile.render(header, V1_ENTRIES, WRAPPED, mac)
    assert text in blocks
    env = parse(text)
    assert (env.header, env.context, env.key, env.entries, env.wrapped_key, env.mac) == (
        header, {"LambdaFunctionName": "orders-api"}, KEY_ARN, V1_ENTRIES, WRAPPED, mac)
    envfile.verify_mac(MAC_KEY, env)
    with pytest.raises(errors.EnvFileTamperedError):
        envfile.verify_mac(bytes(32), env)


def test_known_answer_vector_2():
    header = envfile.header_text({}, None)
    assert header == '{"context":{}}'
    mac = envfile.compute_mac(MAC_KEY, header, [], WRAPPED)
    assert mac.hex() == V2_MAC and V2_MAC in DOC.read_text()
    text = envfile.render(header, [], WRAPPED, mac)
    assert text in doc_blocks()
    envfile.verify_mac(MAC_KEY, parse(text))


def test_mac_input_is_injective_on_boundaries():
    h = envfile.header_text({}, None)
    a = envfile.mac_input(h, [("AB", "Cw=="), ("D", "AA==")], WRAPPED)
    b = envfile.mac_input(h, [("A", "BCw="), ("D", "AA==")], WRAPPED)
    c = envfile.mac_input(h, [("D", "AA=="), ("AB", "Cw==")], WRAPPED)
    assert len({a, b, c}) == 3


# --- with the engine ---------------------------------------------------------------

PLAIN = {"DB_PASSWORD": "s3cr3t-p4ss", "API_TOKEN": "tok_0123456789",
         "DSN": "postgres://app:pw@db/app?sslmode=require", "MULTI": "line1\nline2 'q' \"dq\""}


@pytest.fixture
def sealed(kms):
    return encrypt_env_file(PLAIN, kms=kms, function_name="orders-api")


def test_round_trip_and_values_are_console_style(kms, sealed):
    assert decrypt_env_file(sealed, kms=kms) == PLAIN
    assert list(decrypt_env_file(sealed, kms=kms)) == list(PLAIN)  # order kept
    env = parse(sealed)
    assert env.context == {"LambdaFunctionName": "orders-api"}
    assert env.key == kms.describe_key(KeyId="alias/aws/lambda")["KeyMetadata"]["Arn"]
    for name, value in env.entries:  # each line is what the Lambda console would store
        resp = kms.decrypt(CiphertextBlob=base64.b64decode(value),
                           EncryptionContext={"LambdaFunctionName": "orders-api"})
        assert resp["Plaintext"].decode() == PLAIN[name]
    for secret in PLAIN.values():
        assert secret not in sealed


def test_cli_style_file_without_context(kms):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    text = encrypt_env_file([("A", "1"), ("B", "2")], kms=kms, key_id=key)
    assert parse(text).context == {}
    assert decrypt_env_file(text, kms=kms) == {"A": "1", "B": "2"}
    value = parse(text).entries[0][1]
    assert kms.decrypt(CiphertextBlob=base64.b64decode(value))["Plaintext"] == b"1"


def test_key_pin(kms, sealed):
    other = kms.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(errors.EnvFileTamperedError):
        decrypt_env_file(sealed, kms=kms, key_id=other)
    assert decrypt_env_file(sealed, kms=kms, key_id="alias/aws/lambda") == PLAIN


def _lines(text):
    return text.rstrip("\n").split("\n")


def _join(lines):
    return "\n".join(lines) + "\n"


def tamper_cases(kms, text):
    lines = _lines(text)
    header, entries, mac = lines[0], lines[1:-1], lines[-1]
    other = encrypt_env_file({"DB_PASSWORD": "attacker", "EXTRA": "x"}, kms=kms,
                             function_name="orders-api")
    o_lines = _lines(other)
    name0, value0 = entries[0].split("=", 1)
    name1, value1 = entries[1].split("=", 1)
    yield "value replaced by another file's", _join([header, o_lines[1]] + entries[1:] + [mac])
    yield "value replaced by one of the same file", _join(
        [header, f"{name0}={value1}"] + entries[1:] + [mac])
    yield "name renamed", _join([header, f"DB_PASSWORDX={value0}"] + entries[1:] + [mac])
    yield "entry deleted", _join([header] + entries[1:] + [mac])
    yield "last entry deleted", _join([header] + entries[:-1] + [mac])
    yield "entries swapped", _join([header, entries[1], entries[0]] + entries[2:] + [mac])
    yield "entry added", _join([header] + entries + [o_lines[2], mac])
    yield "duplicate added", _join([header] + entries + [entries[0], mac])
    yield "header context edited", _join(
        [header.replace("orders-api", "orders-apj")] + entries + [mac])
    yield "header key edited", _join([header.replace('"key":"arn', '"key":"xarn')] + entries + [mac])
    yield "header context removed", _join(
        ['#kms-env v1 {"context":{}}'] + entries + [mac])
    parts = mac.split(" ")
    flipped = base64.b64encode(bytes([base64.b64decode(parts[3])[0] ^ 1])
                               + base64.b64decode(parts[3])[1:]).decode()
    yield "MAC flipped", _join([header] + entries + [" ".join(parts[:3] + [flipped])])
    yield "wrapped key from another file", _join(
        [header] + entries + [" ".join(parts[:2] + [o_lines[-1].split(" ")[2], parts[3]])])
    yield "MAC line from another file", _join([header] + entries + [o_lines[-1]])
    yield "MAC line removed", _join([header] + entries)
    yield "text after MAC", _join([header] + entries + [mac, "X=AAAA"])
    yield "comment inserted", _join([header, "# note"] + entries + [mac])
    yield "plaintext line inserted", _join([header, "EXTRA=plain value"] + entries + [mac])


def test_tamper_matrix(kms, sealed):
    assert decrypt_env_file(sealed, kms=kms) == PLAIN
    cases = list(tamper_cases(kms, sealed))
    assert len(cases) == 18
    for label, text in cases:
        assert text != sealed, label
        with pytest.raises(errors.EnvFileTamperedError) as e:
            decrypt_env_file(text, kms=kms)
        for secret in PLAIN.values():
            assert secret not in str(e.value), label


def test_tampered_file_decrypts_no_value(counting, kms, sealed):
    lines = _lines(sealed)
    swapped = _join([lines[0], lines[2], lines[1]] + lines[3:])
    with pytest.raises(errors.EnvFileTamperedError):
        decrypt_env_file(swapped, kms=counting)
    assert counting.calls == ["decrypt"]  # only the MAC key


@pytest.mark.parametrize("text, kind", [
    ("", errors.EnvFileFormatError),
    ("DB_PASSWORD=abc\n", errors.EnvFileFormatError),
    ("#kms-env v2 {\"context\":{}}\n#kms-env-mac v2 AA== AA==\n", errors.EnvFileFormatError),
    ("#kms-env v1 nonsense\n", errors.EnvFileFormatError),
    ("#kms-env v1 {\"context\":[]}\n", errors.EnvFileTamperedError),
    ("#kms-env v1 {\"context\":{\"a\":1}}\n", errors.EnvFileTamperedError),
    ("#kms-env v1 {\"context\":{},\"key\":5}\n", errors.EnvFileTamperedError),
    ("#kms-env v1 {\"context\":{}}\n#kms-env-mac v1 AAAA AAAA\n", errors.EnvFileTamperedError),
    ("#kms-env v1 {\"context\":{}}\n#kms-env-mac v1 AAA= !!\n", errors.EnvFileTamperedError),
])
def test_parse_errors(text, kind):
    with pytest.raises(kind):
        parse(text)


def test_crlf_and_blank_lines_are_insignificant(kms, sealed):
    crlf = sealed.replace("\n", "\r\n").replace("\r\n", "\r\n\r\n", 1) + "\n\n"
    assert decrypt_env_file(crlf, kms=kms) == PLAIN


def test_error_messages_never_quote_lines():
    secret_line = "DB_PASSWORD=my plain secret value"
    with pytest.raises(errors.EnvFileTamperedError) as e:
        parse('#kms-env v1 {"context":{}}\n' + secret_line + "\n")
    assert "my plain secret value" not in str(e.value) and "line 2" in str(e.value)


def test_encrypt_rejects_bad_names_and_empty_values(kms):
    with pytest.raises(errors.EnvFileFormatError):
        encrypt_env_file({"1BAD": "x"}, kms=kms)
    with pytest.raises(errors.EnvFileFormatError):
        encrypt_env_file([("A", "x"), ("A", "y")], kms=kms)
    with pytest.raises(errors.KMSRequestError) as e:
        encrypt_env_file({"EMPTY": ""}, kms=kms)
    assert "EMPTY" in str(e.value)


def test_read_plain_env():
    text = ("# comment\nexport A=1\nB='single # not comment'\nC=\"multi\\nline\"\n"
            "D=unquoted # comment\n\nE=\n")
    assert envfile.read_plain_env(text) == [
        ("A", "1"), ("B", "single # not comment"), ("C", "multi\nline"), ("D", "unquoted"), ("E", "")]
    with pytest.raises(errors.EnvFileFormatError):
        envfile.read_plain_env("JUSTANAME\n")


def test_load_env_file(kms, sealed, tmp_path, monkeypatch):
    path = tmp_path / "app.env.enc"
    path.write_text(sealed)
    monkeypatch.setenv("DB_PASSWORD", "already-set")
    monkeypatch.delenv("API_TOKEN", raising=False)
    out = envfile.load_env_file(str(path), kms=kms, override=False)
    assert out == PLAIN
    import os
    assert os.environ["DB_PASSWORD"] == "already-set"
    assert os.environ["API_TOKEN"] == PLAIN["API_TOKEN"]
    monkeypatch.delenv("API_TOKEN")


# --- fuzzing --------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_parse_never_crashes(text):
    try:
        parse(text)
    except errors.EnvFileError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["#kms-env v1 {\"context\":{}}", "A=AAAA", "B=AAAA", "A=",
                                 "#kms-env-mac v1 AAAA " + "A" * 43 + "=", "", " ", "#x",
                                 "#kms-env v1 {\"context\":{\"k\":\"v\"},\"key\":\"k\"}"]),
                max_size=8))
def test_parse_structured_fuzz(lines):
    try:
        env = parse("\n".join(lines))
    except errors.EnvFileError:
        return
    assert len(env.mac) == 32 and len({n for n, _ in env.entries}) == len(env.entries)


_names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True)
_values = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(_names, _values, max_size=4), st.one_of(st.none(), _names))
def test_round_trip_fuzz(kms, values, function):
    text = encrypt_env_file(values, kms=kms, function_name=function)
    assert decrypt_env_file(text, kms=kms) == values


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_single_byte_mutation_fuzz(kms, sealed, data):
    raw = bytearray(sealed.encode())
    i = data.draw(st.integers(0, len(raw) - 1))
    new = data.draw(st.integers(0x20, 0x7e).filter(lambda b: b != raw[i]))
    raw[i] = new
    try:
        out = decrypt_env_file(raw.decode(), kms=kms)
    except errors.EnvFileError:
        return
    # Only insignificant bytes may change without detection.
    assert out == PLAIN
    assert chr(sealed.encode()[i]) in " \n" or chr(new) in " \n"
