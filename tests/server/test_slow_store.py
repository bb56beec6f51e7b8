"""A slow store must not make requests queue behind one another (issue 14.4).

On a loaded PostgreSQL a query takes hundreds of ms; when many requests need the
same answer at once (an expired access key, a stale cache), they must share one
query rather than run one each in turn.  ``benchmarks/server_stalls.py`` measures
the latencies; these tests pin the mechanisms.
"""
from __future__ import annotations

import asyncio
import threading
import time

from kms_core.server.app import KMSApp, ServerConfig
from kms_core.server.credentials import AccessKeys


def test_concurrent_credential_misses_share_one_store_read(engine):
    key = AccessKeys(engine.store, engine.settings.account_id).create("alice")["AccessKey"]
    app = KMSApp(ServerConfig(audit=False, console=False), engine=engine)
    real, reads = app.credentials.load, []

    def slow_load(access_key_id):
        reads.append(access_key_id)
        time.sleep(0.2)  # a loaded database
        return real(access_key_id)

    app.credentials.load = slow_load

    async def many():
        return await asyncio.gather(*(app._load_credential(key["AccessKeyId"]) for _ in range(16)))

    creds = asyncio.run(many())
    assert reads == [key["AccessKeyId"]]
    assert {c.access_key_id for c in creds} == {key["AccessKeyId"]}
    assert app._loading == {}  # nothing left behind: the next miss reads again
    asyncio.run(app._load_credential(key["AccessKeyId"]))
    assert len(reads) == 2
    app.pool.shutdown()


def test_refreshes_waiting_for_the_lock_share_one_generation_query(engine):
    repo = engine.repo
    real, queries = engine.store.generation, []

    def slow_generation():
        queries.append(1)
        time.sleep(0.3)  # long enough for every thread below to be waiting for the lock
        return real()

    engine.store.generation = slow_generation
    start = threading.Barrier(6)

    def refresh():
        start.wait()
        repo.refresh()

    threads = [threading.Thread(target=refresh) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(queries) == 1


def test_a_change_during_the_wait_still_gets_its_own_query(engine):
    """Skipping is only for refreshes that would learn nothing new."""
    repo = engine.repo
    real, queries = engine.store.generation, []
    entered = threading.Event()

    def slow_generation():
        queries.append(1)
        entered.set()
        time.sleep(0.2)
        return real()

    engine.store.generation = slow_generation
    first = threading.Thread(target=repo.refresh)
    first.start()
    entered.wait(5)
    engine.store.changes.bump()  # a write on this host, after the first query began
    second = threading.Thread(target=repo.refresh)
    second.start()
    first.join()
    second.join()
    assert len(queries) == 2
