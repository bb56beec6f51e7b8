"""The opt-in event-loop watchdog (kms_core/server/loopwatch.py): a stall is
reported once, with who used the CPU during it."""
from __future__ import annotations

import asyncio
import logging
import time

import pytest

from kms_core.server import loopwatch


def _run(blocker, caplog, threshold=0.05):
    async def main():
        watch = loopwatch.LoopWatch(threshold)
        watch.start(asyncio.get_running_loop())
        await asyncio.sleep(0.1)  # healthy: nothing to report
        blocker()
        await asyncio.sleep(0.15)  # the watchdog reports once the loop runs again
        watch.stop()
        return watch.stalls
    with caplog.at_level(logging.WARNING, logger="kms.server.loop"):
        stalls = asyncio.run(main())
    return stalls, [r.getMessage() for r in caplog.records if r.name == "kms.server.loop"]


def test_a_busy_loop_is_attributed_to_the_event_loop(caplog):
    def spin():
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            pass
    stalls, lines = _run(spin, caplog)
    assert stalls == 1 and len(lines) == 1, lines
    assert lines[0].startswith("event loop stalled")
    ms = int(lines[0].split("stalled ", 1)[1].split(" ms", 1)[0])
    assert 250 <= ms <= 1000
    assert "(event loop " in lines[0] and "not running" not in lines[0]


def test_a_loop_that_waits_without_running_says_so(caplog):
    stalls, lines = _run(lambda: time.sleep(0.3), caplog)  # blocked, but using no CPU
    assert stalls == 1 and len(lines) == 1, lines
    assert "mostly not running" in lines[0]


def test_a_healthy_loop_reports_nothing(caplog):
    stalls, lines = _run(lambda: None, caplog)
    assert stalls == 0 and lines == []


@pytest.mark.parametrize(("value", "expected"), [("", None), ("0", None), ("50", 0.05), ("2.5", 0.0025),
                                                 ("fast", None), ("-1", None)])
def test_the_threshold_comes_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv(loopwatch.ENV, value)
    assert loopwatch.threshold_from_env() == expected
