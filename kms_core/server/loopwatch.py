"""Who held up the event loop: an opt-in watchdog for a worker (``KMS_SERVE_WATCH_LOOP=<ms>``).

A request that takes 100 ms on a server whose work per request is ~100 µs was
waiting for something.  Three different things look the same from outside: the
loop thread itself was busy (our code), another thread of this process held
the GIL (the audit writer, a pool thread in a database driver), or the process
was not running at all (the machine's other processes, the database's own).
This tells them apart.  A heartbeat callback on the loop notes the time every
``_BEAT`` seconds; a watchdog thread checks it, and when the heartbeat is late
by more than the threshold it logs one line per stall with, for the stall's
span, the CPU time each thread of the process used (``/proc/self/task/*/stat``,
Linux) and the share of the span the process ran at all.  Off by default: it
costs one callback and one thread wake-up per ``_BEAT``.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from pathlib import Path

log = logging.getLogger("kms.server.loop")

ENV = "KMS_SERVE_WATCH_LOOP"
_BEAT = 0.005  # seconds between heartbeats
_TASKS = Path("/proc/self/task")


def threshold_from_env() -> float | None:
    """The stall threshold in seconds from ``KMS_SERVE_WATCH_LOOP`` (milliseconds), or None (off)."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    try:
        ms = float(raw)
    except ValueError:
        log.warning("%s=%r is not a number of milliseconds: the loop watchdog is off", ENV, raw)
        return None
    return ms / 1000 if ms > 0 else None


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each thread of this process, by "name/tid"."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    try:
        tids = os.listdir(_TASKS)
    except OSError:
        return out
    for tid in tids:
        try:
            stat = (_TASKS / tid / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        out[f"{name}/{tid}"] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _names() -> dict[int, str]:
    return {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}


class LoopWatch:
    """Start with :meth:`start` on the loop to watch; :meth:`stop` ends it."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.stalls = 0
        self._beat = time.monotonic()
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="kms-loop-watch", daemon=True)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_tid = threading.get_native_id()
        self._tick()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()

    def _tick(self) -> None:
        self._beat = time.monotonic()
        assert self._loop is not None
        self._handle = self._loop.call_later(_BEAT, self._tick)

    def _watch(self) -> None:
        before, sampled = thread_cpu(), time.monotonic()
        last_beat = self._beat
        while not self._stop.wait(_BEAT):
            beat = self._beat
            now = time.monotonic()
            if beat != last_beat or now - beat - _BEAT < self.threshold:
                # The loop runs: start the next span's count (often enough that a
                # stall's report covers little before it, rarely enough to cost nothing).
                if beat != last_beat and now - sampled > self.threshold / 4:
                    before, sampled = thread_cpu(), now
                last_beat = beat
                continue
            # Stalled: wait until the loop runs again, then say what the span cost.
            while self._beat == beat and not self._stop.wait(_BEAT):
                pass
            span = time.monotonic() - beat
            after = thread_cpu()
            self.stalls += 1
            self._report(span, before, after)
            before, sampled, last_beat = after, time.monotonic(), self._beat

    def _report(self, span: float, before: dict[str, float], after: dict[str, float]) -> None:
        names = _names()
        used = []
        for key, cpu in after.items():
            delta = cpu - before.get(key, 0.0)
            if delta > 0:
                _, tid = key.rsplit("/", 1)
                label = "event loop" if int(tid) == self._loop_tid else names.get(int(tid), key)
                used.append((delta, label))
        used.sort(reverse=True)
        total = sum(d for d, _ in used)
        parts = ", ".join(f"{label} {d * 1000:.0f} ms" for d, label in used[:4]) or "no thread ran"
        log.warning("event loop stalled %.0f ms: the process ran %.0f ms of it (%s)%s",
                    span * 1000, total * 1000, parts,
                    "" if total >= span / 2 else " - mostly not running: the machine's other work")
