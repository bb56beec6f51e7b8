"""The value format: known-answer vectors from the spec, tamper matrix, fuzzing."""
from __future__ import annotations

import datetime
import decimal
import json
import pathlib
import re
import uuid

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.encrypted_columns import codec
from integrations.encrypted_columns import format as fmt
from integrations.encrypted_columns.errors import DecryptionError
from kms_core.envelope import encode_context

SPEC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "encrypted-column-format.md"
MATERIAL = bytes(range(32))
KEY_ID = bytes.fromhex("0102030405060708")
NONCE = bytes(range(100, 112))
CTX = encode_context({"table": "users", "column": "ssn"})
KEY = fmt.DataKey(KEY_ID, MATERIAL)


def _vectors():
    text = SPEC.read_text(encoding="utf-8")
    block = re.search(r"```vectors\n(.*?)```", text, re.S).group(1)
    return [json.loads(line) for line in block.splitlines() if line.strip()]


def _py(kind, v):
    return {"str": lambda v: v, "bytes": bytes.fromhex, "int": int, "bool": bool, "float": float,
            "decimal": decimal.Decimal, "date": datetime.date.fromisoformat,
            "time": datetime.time.fromisoformat, "datetime": datetime.datetime.fromisoformat,
            "uuid": uuid.UUID, "json": lambda v: v, "null": lambda v: v}[kind](v)


VECTORS = _vectors()


def test_spec_has_vectors_for_both_modes():
    assert {v["mode"] for v in VECTORS} == {"R", "D"}
    assert len(VECTORS) >= 20
    assert encode_context({"table": "users", "column": "ssn"}).hex() in SPEC.read_text()


@pytest.mark.parametrize("vec", VECTORS, ids=lambda v: f"{v['mode']}-{v['type']}-{v['value']!r}")
def test_known_answer(vec):
    value = _py(vec["type"], vec["value"])
    plain = codec.encode(value)
    assert plain.hex() == vec["plaintext"]
    mode = fmt.RANDOMIZED if vec["mode"] == "R" else fmt.DETERMINISTIC
    stored = fmt.seal(KEY, mode, plain, CTX, nonce=NONCE if mode == fmt.RANDOMIZED else None)
    assert stored.hex() == vec["stored"]
    back = codec.decode(fmt.open_(bytes.fromhex(vec["stored"]), CTX, lambda kid: KEY))
    assert back == value and type(back) is type(value)


@pytest.mark.parametrize("vec", VECTORS, ids=lambda v: f"{v['mode']}-{v['type']}-{v['value']!r}")
def test_known_answer_independent_of_our_code(vec):
    """Re-derive each vector straight from the spec with pyca primitives."""
    stored = bytes.fromhex(vec["stored"])
    head = stored[:10]
    assert head[0] == 1 and head[2:10] == KEY_ID
    if vec["mode"] == "R":
        key = HKDF(hashes.SHA256(), 32, None, b"kms-local encrypted-column v1 AES-256-GCM").derive(MATERIAL)
        body = AESGCM(key).encrypt(NONCE, bytes.fromhex(vec["plaintext"]), head + CTX)
        assert head[1] == 0x52 and stored == head + NONCE + body
    else:
        key = HKDF(hashes.SHA256(), 64, None, b"kms-local encrypted-column v1 AES-256-SIV").derive(MATERIAL)
        body = AESSIV(key).encrypt(bytes.fromhex(vec["plaintext"]), [head, CTX])
        assert head[1] == 0x44 and stored == head + body


def test_overhead_is_at_most_40_bytes():
    for value in ("", "x" * 1000, b"\0" * 17):
        raw = value.encode() if isinstance(value, str) else value
        r = fmt.seal(KEY, fmt.RANDOMIZED, codec.encode(value), CTX)
        d = fmt.seal(KEY, fmt.DETERMINISTIC, codec.encode(value), CTX)
        assert len(r) - len(raw) == 39
        assert len(d) - len(raw) == 27


def test_randomized_differs_deterministic_repeats():
    p = codec.encode("same")
    assert fmt.seal(KEY, fmt.RANDOMIZED, p, CTX) != fmt.seal(KEY, fmt.RANDOMIZED, p, CTX)
    assert fmt.seal(KEY, fmt.DETERMINISTIC, p, CTX) == fmt.seal(KEY, fmt.DETERMINISTIC, p, CTX)


def _open(blob, ctx=CTX, key=KEY):
    return fmt.open_(blob, ctx, lambda kid: key if kid == key.key_id else _missing(kid))


def _missing(kid):
    raise DecryptionError("unknown key")


@pytest.mark.parametrize("mode", [fmt.RANDOMIZED, fmt.DETERMINISTIC])
def test_tamper_matrix(mode):
    blob = fmt.seal(KEY, mode, codec.encode("secret value"), CTX)
    assert codec.decode(_open(blob)) == "secret value"
    for i in range(len(blob)):  # every single-bit flip in every byte
        for bit in (0, 3, 7):
            bad = bytearray(blob)
            bad[i] ^= 1 << bit
            with pytest.raises(DecryptionError):
                _open(bytes(bad))
    for n in range(len(blob)):  # every truncation
        with pytest.raises(DecryptionError):
            _open(blob[:n])
    with pytest.raises(DecryptionError):
        _open(blob + b"\0")
    other = fmt.DataKey(b"\x09" * 8, bytes(32))
    swapped = blob[:2] + other.key_id + blob[10:]
    with pytest.raises(DecryptionError):
        _open(swapped, key=other)  # right id, wrong key
    for ctx in ({"table": "users", "column": "email"}, {"table": "admins", "column": "ssn"},
                {"table": "users", "column": "ssn", "attribute": "x"}, {}):
        with pytest.raises(DecryptionError):
            _open(blob, ctx=encode_context(ctx))


def test_mode_byte_swap_fails():
    blob = fmt.seal(KEY, fmt.DETERMINISTIC, codec.encode("v"), CTX)
    with pytest.raises(DecryptionError):
        _open(bytes([1, fmt.RANDOMIZED]) + blob[2:])
    with pytest.raises(DecryptionError):
        _open(bytes([2]) + blob[1:])


def test_errors_and_reprs_hold_no_secrets():
    blob = fmt.seal(KEY, fmt.RANDOMIZED, codec.encode("hunter2"), CTX)
    with pytest.raises(DecryptionError) as info:
        _open(blob, ctx=encode_context({"table": "t", "column": "c"}))
    assert "hunter2" not in str(info.value) and "hunter2" not in repr(info.value)
    assert MATERIAL.hex() not in repr(KEY) and repr(KEY) == "<DataKey 0102030405060708>"


values = st.one_of(
    st.none(), st.text(), st.binary(), st.integers(), st.booleans(),
    st.floats(allow_nan=False), st.decimals(allow_nan=False, allow_infinity=False),
    st.dates(), st.times(), st.datetimes(timezones=st.none() | st.timezones()), st.uuids(),
    st.dictionaries(st.text(), st.integers() | st.text()), st.lists(st.integers()),
)


@settings(max_examples=200, deadline=None)
@given(value=values, deterministic=st.booleans())
def test_roundtrip_fuzz(value, deterministic):
    mode = fmt.DETERMINISTIC if deterministic else fmt.RANDOMIZED
    blob = fmt.seal(KEY, mode, codec.encode(value), CTX)
    back = codec.decode(_open(blob))
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        assert back == value and back.utcoffset() == value.utcoffset()
    else:
        assert back == value and type(back) is type(value)
        if isinstance(value, decimal.Decimal):
            assert str(back) == str(value)


@settings(max_examples=300, deadline=None)
@given(junk=st.binary(max_size=80))
def test_garbage_never_decrypts(junk):
    with pytest.raises(DecryptionError):
        _open(junk)


def test_encrypted_json_known_answer(monkeypatch):
    import base64
    import hashlib
    import hmac as py_hmac

    import sqlalchemy as sa

    from integrations.encrypted_columns import EncryptedJSON
    from integrations.encrypted_columns.keys import KEYRING

    text = SPEC.read_text(encoding="utf-8")
    vec = json.loads(re.search(r"```json-vectors\n(.*?)```", text, re.S).group(1))
    t = sa.Table("patients", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("record", EncryptedJSON(vec["actions"])))
    typ = t.c.record.type
    stored = vec["stored"]
    meta = stored["__kms__"]
    doc = {k: v for k, v in stored.items() if k != "__kms__"}
    signed = typ._signed_bytes(doc, meta["actions"], meta["key"])
    assert signed.hex() == vec["signed_hex"]
    sig_key = HKDF(hashes.SHA256(), 32, None, b"kms-local encrypted-json v1 HMAC-SHA256").derive(MATERIAL)
    assert base64.b64encode(py_hmac.new(sig_key, signed, hashlib.sha256).digest()).decode() == meta["sig"]
    ctx = encode_context({"table": "patients", "column": "record", "attribute": "ssn"})
    assert fmt.open_(base64.b64decode(stored["ssn"]), ctx, lambda k: KEY) == b'\x0b"123-45-6789"'
    monkeypatch.setattr(KEYRING, "read_key", lambda dialect, kid: KEY)
    assert typ.process_result_value(json.loads(json.dumps(stored)), None) == vec["document"]
    stored["name"] = "Eve"
    with pytest.raises(DecryptionError):
        typ.process_result_value(stored, None)


@pytest.mark.parametrize("deterministic", [False, True])
def test_column_reader_rejects_every_truncation_and_extension(sqlite_url, counting_kms, unique,
                                                              deterministic):
    # The types' fast read path relies on the AEAD itself to reject short values.
    import sqlalchemy as sa

    from integrations.encrypted_columns import EncryptedType
    md = sa.MetaData()
    t = sa.Table(unique("trunc"), md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("v", EncryptedType(sa.String(20), deterministic=deterministic)))
    engine = sa.create_engine(sqlite_url)
    md.create_all(engine)
    try:
        with engine.begin() as conn:
            conn.execute(t.insert(), [{"id": 1, "v": "hello"}])
        with engine.connect() as conn:
            blob = bytes(conn.execute(sa.select(sa.type_coerce(t.c.v, sa.LargeBinary))).scalar())
            read = t.c.v.type.result_processor(engine.dialect, None)
            assert read(blob) == "hello"
            for bad in [blob[:n] for n in range(len(blob))] + [blob + b"\0"]:
                with pytest.raises(DecryptionError):
                    read(bad)
            assert read(blob) == "hello"  # the reader still works after failures
    finally:
        md.drop_all(engine)
        engine.dispose()
