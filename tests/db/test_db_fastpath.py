"""EncryptedType's per-value fast paths against the general codec path: str
values of every kind, any buffer the driver returns, nonce blocks, and the
use bound with uses reserved in blocks."""
from __future__ import annotations

from collections import Counter

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.encrypted_columns import DecryptionError, EncryptedType, UnsupportedValueError, codec, configure
from integrations.encrypted_columns import format as fmt
from integrations.encrypted_columns.keys import FORCED_KEY, KEYRING

# Lone surrogates (stored with surrogatepass) leave the strict UTF-8 fast paths.
TEXT = st.text(st.characters(exclude_categories=())
               | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=40)


@pytest.fixture
def table(sqlite_url, counting_kms, unique):
    md = sa.MetaData()
    t = sa.Table(unique("fast"), md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("r", EncryptedType(sa.String(50))),
                 sa.Column("d", EncryptedType(sa.String(50), deterministic=True)),
                 sa.Column("j", EncryptedType(sa.JSON())))
    engine = sa.create_engine(sqlite_url)
    md.create_all(engine)
    yield t, engine
    engine.dispose()


def _processors(t, conn, name):
    conn.execute(sa.text("select 1"))  # sets the statement token, as any execution does
    typ = t.c[name].type
    return (typ.bind_processor(conn.dialect), typ.result_processor(conn.dialect, None),
            lambda blob: fmt.open_(bytes(blob), typ._ctx(),
                                   lambda kid: KEYRING.read_key(conn.dialect, kid)))


def test_str_fast_paths_match_the_codec(table):
    t, engine = table
    with engine.begin() as conn:
        procs = {name: _processors(t, conn, name) for name in ("r", "d", "j")}

        @settings(max_examples=300, deadline=None)
        @given(s=TEXT)
        def check(s):
            for name, (write, read, open_) in procs.items():
                try:
                    expected = codec.encode(s, as_json=name == "j")
                except UnsupportedValueError:  # JSON text is UTF-8: no lone surrogates
                    with pytest.raises(UnsupportedValueError):
                        write(s)
                    continue
                out = write(s)
                assert type(out) is bytearray  # sqlite3 binds it without an adapter lookup
                assert open_(out) == expected
                for stored in (bytes(out), out, memoryview(bytes(out))):  # whatever the driver gives
                    got = read(stored)
                    assert got == s and type(got) is str

        check()


def test_other_drivers_get_bytes(pg_module_url, counting_kms, unique):
    md = sa.MetaData()
    t = sa.Table(unique("fastpg"), md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("r", EncryptedType(sa.String(50))),
                 sa.Column("d", EncryptedType(sa.String(50), deterministic=True)))
    engine = sa.create_engine(pg_module_url)
    md.create_all(engine)
    try:
        with engine.begin() as conn:
            for name in ("r", "d"):
                write, read, _ = _processors(t, conn, name)
                assert type(write("x")) is bytes and read(write("x")) == "x"
    finally:
        md.drop_all(engine)
        engine.dispose()


def test_authenticated_but_malformed_str_is_a_typed_error(table):
    t, engine = table
    with engine.begin() as conn:
        write, read, _ = _processors(t, conn, "r")
        blob = bytes(write("x"))
        key = KEYRING.read_key(conn.dialect, blob[2:10])
        seal = lambda plain: fmt.seal(key, fmt.RANDOMIZED, plain, t.c.r.type._ctx())  # noqa: E731
        assert read(seal(b"\x01" + "\ud800".encode("utf-8", "surrogatepass"))) == "\ud800"
        for bad in (b"", b"\x01\xff", b"\x01\xc3"):  # empty, not UTF-8
            with pytest.raises(DecryptionError):
                read(seal(bad))


def test_nonces_are_unique_across_blocks_and_statements(table):
    t, engine = table
    with engine.begin() as conn:  # blocks of 8, 16, ... 1024 counter nonces
        for start in (0, 2500):
            conn.execute(t.insert(), [{"id": start + i, "r": "same", "d": "same", "j": "same"}
                                      for i in range(2500)])
        raw = conn.execute(sa.select(sa.type_coerce(t.c.r, sa.LargeBinary),
                                     sa.type_coerce(t.c.j, sa.LargeBinary))).all()
        pairs = [bytes(v)[2:22] for row in raw for v in row]  # data-key id + nonce
        assert len(set(pairs)) == len(pairs) == 10_000
        assert len({p[:12] for p in pairs}) == 1  # one data key, one fixed nonce field
        assert len({p[12:] for p in pairs}) == 10_000  # so the counters never repeat

        write, _, _open = _processors(t, conn, "r")
        token = FORCED_KEY.set(KEYRING.read_key(conn.dialect, pairs[0][:8]))
        try:  # a key read back from the key table (tools): random nonces, in blocks too
            nonces = [bytes(write("same")[10:22]) for _ in range(3000)]
        finally:
            FORCED_KEY.reset(token)
        assert len(set(nonces)) == 3000 and not set(nonces) & {p[8:] for p in pairs}


def test_use_bound_is_exact_with_uses_reserved_in_blocks(table, counting_kms):
    t, engine = table
    configure(kms=counting_kms, write_max_uses=5000)  # blocks of at most 5000 >> 10 = 4 uses
    try:
        with engine.begin() as conn:
            for n in range(3):  # each statement gives back its block's unused uses
                conn.execute(t.insert(), [{"id": n * 10_000 + i, "r": "x"} for i in range(1999)])
            stored = conn.execute(sa.select(sa.type_coerce(t.c.r, sa.LargeBinary))).scalars()
            per_key = Counter(bytes(v)[2:10] for v in stored)
        assert sorted(per_key.values(), reverse=True) == [5000, 997]
    finally:
        configure(kms=counting_kms, write_max_uses=2**30)
