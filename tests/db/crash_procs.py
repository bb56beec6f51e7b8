"""Processes for tests/db/test_db_rotation_crash.py (run as scripts, not collected).

    python crash_procs.py zygote URL COLUMN_SPEC BATCH_SIZE LOG
        Imports everything once, then per line N read from stdin forks a child
        that runs `kms db reencrypt` (integrations.encrypted_columns.cli.main)
        and SIGKILLs itself at the N-th SQL event on the data database (a
        statement about to run, or a COMMIT about to be sent); N = 0 runs to the
        end.  Answers each line with "killed" or the exit code.  Forking from a
        warm interpreter keeps 20+ kill points cheap; each child is a real
        process that dies with SIGKILL, holding whatever it held.

    python crash_procs.py writer URL MODULE SEED STOPFILE
        An application process started before the rotation: it looks values
        up, inserts new ones and tries duplicates in a loop until STOPFILE
        exists, then checks every value once more; prints a JSON summary.
"""
from __future__ import annotations

import importlib
import json
import os
import random
import signal
import sys
import time


def _hook_kills(url: str, n: int) -> None:
    import sqlalchemy as sa

    seen = {"n": 0}

    def tick(conn, *args) -> None:
        if str(conn.engine.url) != url:
            return
        seen["n"] += 1
        if seen["n"] == n:
            os.kill(os.getpid(), signal.SIGKILL)

    sa.event.listen(sa.Engine, "before_cursor_execute", tick)
    sa.event.listen(sa.Engine, "commit", tick)


def zygote(url: str, spec: str, batch_size: str, log: str) -> None:
    import sqlalchemy as sa
    import tqdm  # noqa: F401 - imported once, before forking

    import kms_core

    kms_core.client().list_keys(Limit=1)  # imports the embedded engine (each child opens its own)

    from integrations.encrypted_columns import cli, tools  # noqa: F401

    canonical = str(sa.make_url(url))
    sa.create_engine(url).dialect.dbapi  # noqa: B018 - the driver, imported before forking
    for line in sys.stdin:
        n = int(line)
        pid = os.fork()
        if pid == 0:
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            if n:
                _hook_kills(canonical, n)
            try:
                rc = cli.main(["reencrypt", "--url", url, "--column", spec,
                               "--batch-size", batch_size, "--no-progress"])
            except BaseException as err:
                print(f"crash_procs: {type(err).__name__}: {err}", flush=True)
                rc = 3
            sys.stdout.flush()
            os._exit(rc)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            answer = "killed" if os.WTERMSIG(status) == signal.SIGKILL else f"signal {os.WTERMSIG(status)}"
        else:
            answer = str(os.WEXITSTATUS(status))
        print(answer, flush=True)


def writer(url: str, module: str, seed: str, stopfile: str) -> None:
    import sqlalchemy as sa

    t = importlib.import_module(module).accounts
    engine = sa.create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})
    n_seed = int(seed)
    seeded = {i: f"u{i}@x.org" for i in range(1, n_seed + 1)}
    stats = {"lookups": 0, "missed": 0, "inserts": 0, "insert_failed": 0, "dups_tried": 0,
             "dup_accepted": 0, "final_missed": 0, "final_dup_accepted": 0, "retries": 0}
    rng = random.Random(os.getpid())
    mine: dict[int, str] = {}

    def lookup(value: str):
        with engine.connect() as conn:
            return conn.execute(sa.select(t.c.id).where(t.c.email == value)).scalar_one_or_none()

    def insert(row_id: int, value: str) -> bool:
        """True if the row went in; False if UNIQUE rejected it."""
        for _ in range(50):
            try:
                with engine.begin() as conn:
                    conn.execute(t.insert(), [{"id": row_id, "email": value}])
                return True
            except sa.exc.IntegrityError:
                return False
            except sa.exc.OperationalError as err:  # SQLite: the tool holds the write lock
                if "locked" not in str(err):
                    raise
                stats["retries"] += 1
                time.sleep(0.01)
        raise RuntimeError("database stayed locked")

    healthy = [i for i in seeded if lookup(seeded[i]) == i]  # found before the rotation
    print(json.dumps({"ready": len(healthy)}), flush=True)
    k = 0
    while not os.path.exists(stopfile):
        time.sleep(0.02)  # a steady load, not a busy loop on a shared machine
        k += 1
        i = rng.choice(healthy)
        stats["lookups"] += 1
        stats["missed"] += lookup(seeded[i]) != i
        value = f"w{os.getpid()}-{k}@x.org"
        if insert(100000 + k, value):
            stats["inserts"] += 1
            mine[100000 + k] = value
        else:
            stats["insert_failed"] += 1
        stats["dups_tried"] += 1
        stats["dup_accepted"] += insert(200000 + k, seeded[rng.choice(healthy)])
        if mine:
            j = rng.choice(list(mine))
            stats["lookups"] += 1
            stats["missed"] += lookup(mine[j]) != j
    for i, value in list(seeded.items()) + list(mine.items()):
        stats["final_missed"] += lookup(value) != i
    for k, i in enumerate(list(seeded)[::7]):
        stats["final_dup_accepted"] += insert(300000 + k, seeded[i])
    stats["own_rows"] = len(mine)
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    {"zygote": zygote, "writer": writer}[sys.argv[1]](*sys.argv[2:])
