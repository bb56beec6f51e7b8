"""EncryptedJSON: per-attribute actions, queryable SIGN_ONLY attributes,
signature checks against tampering, on all three databases."""
from __future__ import annotations

import base64
import json

import pytest
import sqlalchemy as sa

from integrations.encrypted_columns import (
    DO_NOTHING,
    ENCRYPT_AND_SIGN,
    SIGN_ONLY,
    DecryptionError,
    EncryptedJSON,
    SignatureError,
    UnsupportedComparisonError,
)

ACTIONS = {"pk": SIGN_ONLY, "name": SIGN_ONLY, "ssn": ENCRYPT_AND_SIGN, "note": DO_NOTHING}
DOC = {"pk": "u1", "name": "Ann", "ssn": "123-45-6789", "note": "scratch",
       "card": {"number": "4111", "exp": [12, 2030]}}


@pytest.fixture
def docs(db, unique):
    md = sa.MetaData()
    t = sa.Table(unique("docs"), md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("doc", EncryptedJSON(ACTIONS)))
    md.create_all(db)
    yield t
    md.drop_all(db)


def _raw(conn, t, id_=1):
    v = conn.execute(sa.select(sa.type_coerce(t.c.doc, sa.JSON)).where(t.c.id == id_)).scalar_one()
    return json.loads(v) if isinstance(v, str) else v


def _put_raw(conn, t, doc, id_=1):
    conn.execute(sa.update(t).where(t.c.id == id_)
                 .values({t.c.doc: sa.type_coerce(sa.bindparam("d", doc), sa.JSON)}))


def test_roundtrip_and_layout(db, docs):
    with db.begin() as conn:
        conn.execute(docs.insert(), [{"id": 1, "doc": DOC}, {"id": 2, "doc": None}])
    with db.connect() as conn:
        assert conn.execute(sa.select(docs.c.doc).where(docs.c.id == 1)).scalar_one() == DOC
        assert conn.execute(sa.select(docs.c.doc).where(docs.c.id == 2)).scalar_one() is None
        raw = _raw(conn, docs)
    assert raw["name"] == "Ann" and raw["note"] == "scratch" and raw["pk"] == "u1"
    assert "123-45-6789" not in json.dumps(raw) and "4111" not in json.dumps(raw)
    assert base64.b64decode(raw["ssn"])[:2] == b"\x01R"
    assert raw["__kms__"]["actions"] == {"pk": "S", "name": "S", "ssn": "E", "card": "E"}


def test_sign_only_attributes_are_queryable(db, docs):
    with db.begin() as conn:
        conn.execute(docs.insert(), [{"id": 1, "doc": DOC}, {"id": 2, "doc": dict(DOC, name="Bob")}])
    with db.connect() as conn:
        ids = conn.execute(sa.select(docs.c.id).where(docs.c.doc["name"].as_string() == "Bob")).scalars().all()
        assert ids == [2]
    with pytest.raises(UnsupportedComparisonError, match="encrypted"):
        docs.c.doc["ssn"]
    with pytest.raises(UnsupportedComparisonError):
        _ = docs.c.doc == {"a": 1}


CHANGES = ["edit_signed", "drop_signed", "add_signed", "swap_encrypted", "edit_actions",
           "drop_meta", "edit_sig", "downgrade_encrypted_to_plain"]


def test_tampering_is_detected(db, docs):
    rows = [{"id": i, "doc": DOC} for i in range(1, len(CHANGES) + 1)]
    with db.begin() as conn:
        conn.execute(docs.insert(), [*rows, {"id": 100, "doc": dict(DOC, ssn="999")}])
        other = _raw(conn, docs, 100)
        for id_, change in enumerate(CHANGES, 1):
            doc = _raw(conn, docs, id_)
            if change == "edit_signed":
                doc["name"] = "Mallory"
            elif change == "drop_signed":
                del doc["pk"]
            elif change == "add_signed":
                doc["role"] = "admin"  # default action ENCRYPT_AND_SIGN: must be signed
            elif change == "swap_encrypted":
                doc["ssn"] = other["ssn"]
            elif change == "edit_actions":
                doc["__kms__"]["actions"]["name"] = "E"
            elif change == "drop_meta":
                del doc["__kms__"]
            elif change == "edit_sig":
                doc["__kms__"]["sig"] = base64.b64encode(b"\0" * 32).decode()
            elif change == "downgrade_encrypted_to_plain":
                doc["__kms__"]["actions"].pop("ssn")
                doc["ssn"] = "000-00-0000"
            _put_raw(conn, docs, doc, id_)
    with db.connect() as conn:
        assert conn.execute(sa.select(docs.c.doc).where(docs.c.id == 100)).scalar_one()["ssn"] == "999"
        for id_, change in enumerate(CHANGES, 1):
            with pytest.raises(DecryptionError) as info:
                conn.execute(sa.select(docs.c.doc).where(docs.c.id == id_)).scalar_one()
            assert "123-45-6789" not in str(info.value), change


def test_signed_numbers_survive_database_normalisation(db, docs):
    # PostgreSQL's jsonb returns 1e300 as 1000...0 and -0.0 as 0.0: still valid
    doc = {"pk": 1e300, "name": [-0.0, 0.1, 12345678901234567890, 1.5e-7, True, None], "ssn": 1.25}
    with db.begin() as conn:
        conn.execute(docs.insert(), [{"id": 1, "doc": doc}])
    with db.connect() as conn:
        got = conn.execute(sa.select(docs.c.doc)).scalar_one()
    assert float(got["pk"]) == 1e300 and got["name"][1:] == doc["name"][1:] and got["ssn"] == 1.25


def test_canonical_json_is_unambiguous():
    from integrations.encrypted_columns.types import canonical_json
    pairs = [({"a": "1"}, {"a": 1}), ([True], [1]), ([None], ["n"]), (["ab", "c"], ["a", "bc"]),
             ({"a": {"b": 1}}, {"a": [["b", 1]]}), (1, 2), ("x", ["x"])]
    for a, b in pairs:
        assert canonical_json(a) != canonical_json(b)
    assert canonical_json({"b": 1, "a": 2.0}) == canonical_json({"a": 2, "b": 1.0})


def test_do_nothing_attribute_may_change(db, docs):
    with db.begin() as conn:
        conn.execute(docs.insert(), [{"id": 1, "doc": DOC}])
        doc = _raw(conn, docs)
        doc["note"] = "edited by SQL"
        _put_raw(conn, docs, doc)
    with db.connect() as conn:
        got = conn.execute(sa.select(docs.c.doc)).scalar_one()
    assert got == dict(DOC, note="edited by SQL")


def test_document_copied_to_another_column_fails(db, unique):
    md = sa.MetaData()
    t = sa.Table(unique("docs2"), md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("a", EncryptedJSON(ACTIONS)), sa.Column("b", EncryptedJSON(ACTIONS)))
    md.create_all(db)
    try:
        with db.begin() as conn:
            conn.execute(t.insert(), [{"id": 1, "a": DOC, "b": None}])
            raw = conn.execute(sa.select(sa.type_coerce(t.c.a, sa.JSON))).scalar_one()
            conn.execute(sa.update(t).values({t.c.b: sa.type_coerce(sa.bindparam("d", raw), sa.JSON)}))
        with db.connect() as conn, pytest.raises(SignatureError):
            conn.execute(sa.select(t.c.b)).scalar_one()
    finally:
        md.drop_all(db)


def test_bad_configuration_and_values(unique):
    with pytest.raises(ValueError):
        EncryptedJSON({"a": "ENCRYPT"})
    with pytest.raises(ValueError):
        EncryptedJSON({"__kms__": SIGN_ONLY})
    t = EncryptedJSON(ACTIONS)
    assert repr(t).startswith("EncryptedJSON({") and "alias/aws/dynamodb" not in repr(t)
    assert t.key_id == "alias/aws/dynamodb"
