"""Threads sharing one engine (hence one set of processors): values never mix
one key's header with another key's cipher, and no (data key, nonce) pair is
ever used twice.  Nonce blocks: reserved once, handed out once."""
from __future__ import annotations

import sys
import threading

import pytest
import sqlalchemy as sa

from integrations.encrypted_columns import EncryptedType
from integrations.encrypted_columns import format as fmt

THREADS, STATEMENTS, ROWS = 4, 8, 40


@pytest.fixture
def fast_switching():
    # Make the interpreter switch threads every few bytecodes, so statements
    # of different threads interleave inside the processors.
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def test_threads_with_their_own_pending_keys_never_mix(pg_module_url, counting_kms, unique,
                                                       fast_switching):
    md = sa.MetaData()
    t = sa.Table(unique("conc"), md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("a", EncryptedType(sa.String(60))),
                 sa.Column("b", EncryptedType(sa.String(60))),
                 sa.Column("d", EncryptedType(sa.String(60), deterministic=True)))
    engine = sa.create_engine(pg_module_url, pool_size=THREADS + 1)
    md.create_all(engine)
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def writer(n: int) -> None:
        try:
            start.wait()
            # One transaction per thread: each makes its own (pending) data key,
            # so the threads really write under different keys at the same time.
            with engine.begin() as conn:
                for s in range(STATEMENTS):
                    base = (n * STATEMENTS + s) * ROWS
                    conn.execute(t.insert(), [
                        {"id": i, "a": f"a{i}", "b": f"b{i}", "d": f"d{i % 7}"}
                        for i in range(base, base + ROWS)])
        except BaseException as err:
            errors.append(err)

    try:
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(THREADS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        with engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.id, t.c.a, t.c.b, t.c.d)).all()
            raw = conn.execute(sa.select(sa.type_coerce(t.c.a, sa.LargeBinary),
                                         sa.type_coerce(t.c.b, sa.LargeBinary))).all()
        total = THREADS * STATEMENTS * ROWS
        assert len(rows) == total
        for r in rows:
            assert (r.a, r.b, r.d) == (f"a{r.id}", f"b{r.id}", f"d{r.id % 7}")
        pairs = [bytes(v)[2:22] for row in raw for v in row]  # (data-key id, nonce)
        assert len(set(pairs)) == 2 * total
        assert len({p[:8] for p in pairs}) >= 2  # the threads did use different keys
    finally:
        md.drop_all(engine)
        engine.dispose()


def test_counter_nonce_blocks_are_disjoint_across_threads():
    key = fmt.DataKey(b"\x01" * 8, bytes(32))
    got: list[list[bytes]] = []
    lock = threading.Lock()

    def take():
        mine = []
        for size in (1, 8, 1024, 3) * 25:
            mine += key.counter_nonces(size)
        with lock:
            got.append(mine)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    flat = [n for mine in got for n in mine]
    assert len(flat) == 4 * 25 * (1 + 8 + 1024 + 3)
    assert len(set(flat)) == len(flat)
    assert all(len(n) == fmt.NONCE_LEN and n[:4] == key.nonce_prefix for n in flat)
    # the counter is big-endian after the fixed field and covers 0..count-1
    assert sorted(int.from_bytes(n[4:], "big") for n in flat) == list(range(len(flat)))


def test_counter_nonces_refuse_to_wrap():
    key = fmt.DataKey(b"\x02" * 8, bytes(32))
    key._nonce_next = 2**64 - 2
    assert len(key.counter_nonces(2)) == 2
    with pytest.raises(ValueError, match="exhausted"):
        key.counter_nonces(1)


def test_random_nonce_blocks():
    block = fmt.random_nonces(1000)
    assert len(block) == 1000 and all(len(n) == fmt.NONCE_LEN for n in block)
    assert len(set(block)) == 1000
