"""Temporary siblings of local encrypted files: created locked, made durable, swept.

A local write goes to ``.<name>.<random>.kfse-tmp`` next to its destination
and is renamed over it on close.  The writer holds an exclusive ``flock`` on
the temporary for its whole life (the lock belongs to the writer's open file
description, so the kernel drops it when the process dies, however it dies).
Before the rename the file is ``fsync``-ed, and after it the directory, so a
crash never leaves a destination that names unwritten data.

A writer killed before its rename leaves its temporary behind.  ``sweep``
removes temporaries that are older than ``older_than`` seconds *and* whose
lock it can take without waiting: a live writer's lock is never free, so its
file is never removed; the age only covers the instant between creating a
file and locking it.  Filesystems without ``flock`` (some network mounts)
leave temporaries alone.
"""
from __future__ import annotations

import os
import time
import uuid

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locks, so nothing is ever swept
    fcntl = None  # type: ignore[assignment]

TEMP_SUFFIX = ".kfse-tmp"
STALE_AFTER = 15 * 60.0  # seconds; see the module docstring


def temp_path(path: str) -> str:
    parent, _, name = path.rpartition("/")
    return f"{parent}/.{name}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}"


def _try_lock(fd: int) -> bool:
    if fcntl is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by a live writer, or locks unsupported here
        return False
    return True


class LockedTemp:
    """A new temporary sibling of ``path``, created exclusively and locked."""

    def __init__(self, path: str, fsync: bool = True, make_parents: bool = False):
        self.path = path
        self.fsync = fsync
        self.name = temp_path(path)
        if make_parents:
            os.makedirs(os.path.dirname(self.name) or ".", exist_ok=True)
        fd = os.open(self.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                     0o666)
        _try_lock(fd)  # best effort: without locks nothing is swept either
        # Unbuffered: the writer hands over batches of 512 KiB and more, which
        # a buffer would only copy.
        self.file = open(fd, "wb", buffering=0)  # noqa: SIM115 - closed by publish/abort

    def write(self, data: memoryview) -> int:
        done = 0
        while done < len(data):  # a raw write may be short
            done += self.file.write(data[done:]) or 0
        return done

    def finish(self) -> None:
        """Everything written and, unless disabled, on disk (still locked)."""
        if self.fsync:
            os.fsync(self.file.fileno())

    def publish(self, exclusive: bool) -> None:
        """Move into place (``os.link`` for exclusive creation), sync the
        directory, then drop the lock."""
        try:
            if exclusive:
                try:
                    os.link(self.name, self.path)  # fails if path appeared meanwhile
                finally:
                    os.unlink(self.name)
            else:
                os.replace(self.name, self.path)
            if self.fsync:
                sync_dir(os.path.dirname(self.path) or ".")
        finally:
            self.file.close()

    def abort(self) -> None:
        try:
            os.unlink(self.name)
        except OSError:
            pass
        try:
            self.file.close()
        except OSError:
            pass


def sync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot sync a directory; the file itself is synced
        pass
    finally:
        os.close(fd)


def sweep(directory: str, older_than: float = STALE_AFTER) -> list[str]:
    """Remove the temporaries in ``directory`` left by dead writers; returns their paths."""
    removed: list[str] = []
    cutoff = time.time() - older_than
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX)):
            continue
        try:
            if not entry.is_file(follow_symlinks=False) or entry.stat().st_mtime > cutoff:
                continue
            fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            continue
        try:
            # Same file still at that name (not renamed into place meanwhile)?
            if _try_lock(fd) and os.path.samestat(os.fstat(fd), os.stat(entry.path)):
                os.unlink(entry.path)
                removed.append(entry.path)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed
