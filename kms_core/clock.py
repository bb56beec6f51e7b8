"""Clocks.  The engine reads time only through one, so tests can move it.

* :class:`SystemClock` (the default) is the real time, even inside a test
  that freezes or moves the process's time with freezegun or time-machine: a
  key scheduled for deletion while a test's time is frozen in the past must
  not be gone when the test returns to the present.
* :class:`FakeClock` moves only when told to: it is how tests drive rotation
  periods and deletion windows (docs/testing.md).
* :class:`WallClock` follows ``time.time()`` as the process sees it, frozen or
  not, for the tests that do want the engine to follow freezegun/time-machine.
"""
from __future__ import annotations

import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

__all__ = ["Clock", "FakeClock", "SystemClock", "WallClock", "true_time"]


class Clock(Protocol):
    """What the engine needs of a clock."""

    def now(self) -> datetime: ...

    def timestamp(self) -> float: ...


class _Real:
    # Kept on a class, not as module globals: freezegun swaps every module-level
    # reference to time.time it finds in sys.modules, but not class attributes.
    time = time.time


def true_time() -> float:
    """Seconds since the epoch, ignoring freezegun's and time-machine's patches."""
    tm = sys.modules.get("time_machine")
    if tm is not None:
        hatch: Any = getattr(tm, "escape_hatch", None)
        if hatch is not None and hatch.is_travelling():
            return float(hatch.time.time())
    fg: Any = sys.modules.get("freezegun.api")
    if fg is not None:
        return float(fg.real_time())  # freezegun never patches its own module
    return _Real.time()


class SystemClock:
    """The real time (see the module's docstring)."""

    def now(self) -> datetime:
        return datetime.fromtimestamp(true_time(), UTC)

    def timestamp(self) -> float:
        return true_time()

    def __repr__(self) -> str:
        return "SystemClock()"


class WallClock:
    """The process's ``time.time()``: follows freezegun and time-machine."""

    def now(self) -> datetime:
        return datetime.fromtimestamp(time.time(), UTC)

    def timestamp(self) -> float:
        return time.time()

    def __repr__(self) -> str:
        return "WallClock()"


class FakeClock:
    """A clock that moves only when told to (thread-safe).

    ``FakeClock()`` starts at 2026-01-01T00:00:00Z; ``FakeClock(start)`` at
    ``start`` (an aware ``datetime``, or a naive one taken as UTC).
    """

    def __init__(self, start: datetime | None = None):
        if start is not None and start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def timestamp(self) -> float:
        return self.now().timestamp()

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """``advance(days=30, seconds=1)`` (``timedelta``'s arguments) or
        ``advance(timedelta(...))``; returns the new time."""
        step = (delta or timedelta()) + timedelta(**kwargs)
        if step < timedelta():
            raise ValueError("a FakeClock only moves forward (use set() to go back on purpose)")
        with self._lock:
            self._now += step
            return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        with self._lock:
            self._now = when

    def __repr__(self) -> str:
        return f"FakeClock({self.now().isoformat()!r})"
