"""The streaming encrypting writer, and where its bytes go until the file is published."""
from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Any, Protocol

from fsspec.implementations.memory import MemoryFile, MemoryFileSystem
from fsspec.spec import AbstractBufferedFile

from . import pipeline
from .format import TAG_SIZE, ChunkCipher, Header, make_trailer
from .localtemp import LockedTemp, temp_path

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

# Plaintext sealed per target write (at least one chunk).  One write per
# 512 KiB instead of per 64 KiB chunk measured 1.15-1.3x faster on local files
# (fewer syscalls).  memory:// takes 64 KiB at a time: its write is a copy,
# faster from a buffer that is still in the CPU cache.
_BATCH = 2**19
_MEMORY_BATCH = 2**16
# Writes carrying at least this much plaintext in whole chunks are sealed on
# the worker threads (pipeline.py), in jobs of up to _JOB bytes (at least two
# per worker, so that this thread hands sealed jobs to the target in order
# while the next ones are sealed).
_PARALLEL_MIN = 2**22
_JOB = 2**20
# Smaller writes are sealed on the caller's thread while, once a file has
# filled a batch, a thread of its own writes the previous batches
# (pipeline.WriteBehind): 3 buffers of 2 MiB.  Measured with 1 MiB writes to
# local files: 2 MiB batches overlapped fully, 512 KiB ones lost ~10% to
# hand-offs.  Not for memory://, whose write (a BytesIO copy) holds the GIL.
_BEHIND_BATCH = 2**21
_BEHIND_BUFFERS = 3


class Sink(Protocol):
    """Where the ciphertext goes until ``publish`` makes it the file at its path."""

    name: str

    def write(self, data: memoryview) -> Any: ...
    def finish(self) -> None: ...
    def publish(self, exclusive: bool) -> None: ...
    def abort(self) -> None: ...


class _MemorySink:
    """memory://: an uncommitted ``MemoryFile`` (fsspec's public class), committed
    by ``publish``, so a failed write changes nothing.  MemoryFileSystem.open
    would commit the empty file at once (it ignores ``autocommit``)."""

    def __init__(self, fs: MemoryFileSystem, path: str, mode: str):
        if fs.isdir(path):
            raise IsADirectoryError(path)
        parts = path.split("/")
        for i in range(1, len(parts)):
            if fs.isfile("/".join(parts[:i])):
                raise FileExistsError("/".join(parts[:i]))
        self.fs, self.name, self._file = fs, path, MemoryFile(fs, path)

    def write(self, data: memoryview) -> Any:
        return self._file.write(data)

    def append_in_place(self, n: int) -> tuple[memoryview, memoryview]:
        """Grow the file by ``n`` bytes and return (buffer, view of them) to fill
        in place: a large write is sealed straight into the file (no copy, and
        BytesIO.write, which holds the GIL, does not stall the sealing threads).
        Release both views before the next write."""
        f = self._file
        end = f.seek(0, io.SEEK_END)
        f.seek(end + n - 1)
        f.write(b"\0")  # BytesIO grows (zero-filled) up to here
        whole = f.getbuffer()
        return whole, whole[end:end + n]

    def finish(self) -> None:
        pass

    def publish(self, exclusive: bool) -> None:
        if exclusive and self.fs.exists(self.name):
            raise FileExistsError(self.name)
        self._file.commit()

    def abort(self) -> None:
        self._file = MemoryFile()


class _DirectSink:
    """Object stores: the upload itself is atomic (it completes on close)."""

    def __init__(self, fs: Any, path: str, mode: str, autocommit: bool, **kwargs: Any):
        self.name = path
        self._autocommit = autocommit
        self._f = fs.open(path, mode, autocommit=autocommit, **kwargs)

    def write(self, data: memoryview) -> Any:
        return self._f.write(data)

    def finish(self) -> None:
        self._f.close()  # with autocommit, this publishes

    def publish(self, exclusive: bool) -> None:
        if not self._autocommit:
            self._f.commit()

    def abort(self) -> None:
        f = self._f
        try:
            if hasattr(f, "discard"):
                f.discard()
            if isinstance(f, AbstractBufferedFile):
                f.closed = True  # stop AbstractBufferedFile.__del__ from committing
            elif not getattr(f, "closed", True):
                f.close()
        except Exception:
            pass


class _TempSink:
    """Other filesystems: a hidden sibling, moved into place by ``publish``."""

    def __init__(self, efs: Any, path: str, **kwargs: Any):
        self._efs, self._path = efs, path
        self.name = temp_path(path)
        self._f = efs.fs.open(self.name, "wb", **kwargs)

    def write(self, data: memoryview) -> Any:
        return self._f.write(data)

    def finish(self) -> None:
        self._f.close()

    def publish(self, exclusive: bool) -> None:
        self._efs._commit_temp(self.name, self._path, exclusive)

    def abort(self) -> None:
        try:
            if not self._f.closed:
                self._f.close()
            self._efs.fs.rm_file(self.name)
        except Exception:
            pass


def open_sink(efs: Any, path: str, mode: str, autocommit: bool, **kwargs: Any) -> Sink:
    inner = efs.fs
    if isinstance(inner, MemoryFileSystem):
        return _MemorySink(inner, path, mode)
    if efs._writes_are_atomic:
        return _DirectSink(inner, path, mode, autocommit, **kwargs)
    if efs._is_local:
        efs._sweep_once(os.path.dirname(path) or ".")
        return LockedTemp(path, fsync=efs.fsync, make_parents=getattr(inner, "auto_mkdir", False))
    return _TempSink(efs, path, **kwargs)


class EncryptedWriteFile(io.BufferedIOBase):
    """Streaming writer: memory stays at one staged chunk plus one batch of
    ciphertext (see _BATCH), or _BEHIND_BUFFERS batches once a file outgrows one
    and a thread of its own writes them, or ``pipeline.window()`` jobs of _JOB
    while a large write is sealed on the worker threads, then the target's own
    buffer.

    The object only becomes valid when ``close()`` writes the final chunk and
    publishes it; leaving a ``with`` block by an exception discards it, and an
    interrupted writer leaves no final chunk, so a half-written object never
    reads as valid.
    """

    def __init__(self, efs: Any, path: str, mode: str, header: Header, cipher: ChunkCipher,
                 on_close: Callable[[int], None] | None = None, autocommit: bool = True,
                 **open_kwargs: Any):
        super().__init__()
        self.autocommit = autocommit
        self._published = False
        self.fs = efs
        self.path = path
        self.mode = mode
        self._header = header
        self._cipher = cipher
        self._on_close = on_close
        self._c = header.chunk_size
        self._pending: bytearray | None = bytearray(self._c)
        self._plen = 0
        self._index = 0
        self._out: memoryview | None = None
        self._olen = 0
        self._behind: pipeline.WriteBehind | None = None  # started by the first full batch
        self._free: list[bytearray] = []  # job buffers of the threaded path
        self._written = 0
        self._body = 0
        self._done = True  # nothing to discard until the sink exists
        if "x" in mode and efs.fs.exists(path):
            raise FileExistsError(path)
        self._sink: Sink = open_sink(efs, path, mode, autocommit, **open_kwargs)
        self._target = self._sink.name
        memory = isinstance(self._sink, _MemorySink)
        # Full batches are written by a thread of their own while this one seals
        # (os.write releases the GIL; an object store's upload waits on the network).
        self._may_write_behind = not memory and pipeline.workers() > 1
        batch = _MEMORY_BATCH if memory else _BATCH
        self._batch_size = max(1, batch // self._c) * (self._c + TAG_SIZE)
        self._done = False
        try:
            self._sink.write(memoryview(header.encode()))
        except BaseException:
            self.discard()
            raise

    def __repr__(self) -> str:
        return f"<EncryptedWriteFile {self.path!r} mode={self.mode!r}>"

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._written

    # -- the way to the sink --------------------------------------------------------
    def _emit(self) -> None:
        """The full batch buffer to the sink; ``self._out`` is then free to fill."""
        out = self._out
        assert out is not None
        behind = self._behind
        if behind is None:
            self._sink.write(out)
            if self._may_write_behind:  # a file of more than one batch: write the next ones behind
                u = self._c + TAG_SIZE
                self._behind = pipeline.WriteBehind(self._sink.write, _BEHIND_BUFFERS,
                                                    max(1, _BEHIND_BATCH // self._c) * u)
                self._out = self._behind.buffer()
            return
        behind.put(out, len(out))
        self._out = behind.buffer()

    def _write_sealed(self) -> None:
        """Everything sealed so far, in order, to the sink."""
        if self._behind is not None:
            self._behind.drain()
        if self._olen:
            assert self._out is not None
            self._sink.write(self._out[:self._olen])
            self._olen = 0

    def _seal(self, src: memoryview, count: int) -> None:
        """Seal ``count`` whole, non-final chunks from ``src`` (the caller's
        memory, no copy): on the worker threads when there are many, else
        into the batch buffer, each full batch going to the target."""
        c, u = self._c, self._c + TAG_SIZE
        if count * c >= _PARALLEL_MIN and pipeline.workers() > 1:
            self._seal_threaded(src, count)
            return
        o, p = self._olen, 0
        while count:
            out = self._out
            if out is None:
                out = self._out = memoryview(bytearray(self._batch_size))
            k = min(count, (len(out) - o) // u)
            o += self._cipher.seal_chunks(self._index, src[p:p + k * c], out[o:o + k * u])
            self._index += k
            self._body += k * u
            p += k * c
            count -= k
            if o == len(out):
                self._emit()
                o = 0
        self._olen = o

    def _seal_threaded(self, src: memoryview, count: int) -> None:
        self._write_sealed()  # chunks already sealed go first
        if isinstance(self._sink, _MemorySink):
            self._seal_in_place(self._sink, src, count)
            return
        c = self._c
        per = max(1, min(_JOB // c, -(-count // pipeline.window())))
        size = per * (c + TAG_SIZE)
        cipher = self._cipher

        def jobs() -> Iterator[Callable[[], tuple[bytearray, int]]]:
            for k in range(0, count, per):
                buf = self._free.pop() if self._free else bytearray(0)
                if len(buf) < size:
                    buf = bytearray(size)
                view = src[k * c:min(count, k + per) * c]

                def job(buf: bytearray = buf, index: int = self._index + k,
                        view: memoryview = view) -> tuple[bytearray, int]:
                    return buf, cipher.seal_chunks(index, view, buf)
                yield job

        def consume(result: tuple[bytearray, int]) -> None:
            buf, n = result
            self._sink.write(memoryview(buf)[:n])
            self._body += n
            self._free.append(buf)

        pipeline.run_in_order(jobs(), consume)
        self._index += count

    def _seal_in_place(self, sink: _MemorySink, src: memoryview, count: int) -> None:
        """memory://: the jobs seal straight into the grown file."""
        c, u = self._c, self._c + TAG_SIZE
        per = max(1, min(_JOB // c, -(-count // pipeline.window())))
        cipher = self._cipher
        whole, dest = sink.append_in_place(count * u)
        try:
            def jobs() -> Iterator[Callable[[], int]]:
                for k in range(0, count, per):
                    m = min(count, k + per)

                    def job(index: int = self._index + k, lo: int = k, hi: int = m) -> int:
                        out = dest[lo * u:hi * u]  # every view of the file is released before it grows
                        try:
                            return cipher.seal_chunks(index, src[lo * c:hi * c], out)
                        finally:
                            out.release()
                    yield job
            pipeline.run_in_order(jobs())
        finally:
            dest.release()
            whole.release()
        self._index += count
        self._body += count * u

    def _seal_last(self) -> None:
        """Seal the pending bytes as the final chunk and write out the batch."""
        n = self._plen
        assert self._pending is not None
        out, o = self._out, self._olen
        if out is None or len(out) - o < n + TAG_SIZE:  # a one-chunk file, or a full batch
            self._write_sealed()
            out = self._out = memoryview(bytearray(n + TAG_SIZE))
            o = 0
        k = self._cipher.seal_chunks(self._index, memoryview(self._pending)[:n],
                                     out[o:o + n + TAG_SIZE], final=True)
        self._index += 1
        self._body += k
        self._olen = o + k
        self._write_sealed()

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        pending = self._pending
        assert pending is not None
        mv = memoryview(data).cast("B")
        n = len(mv)
        c = self._c
        pos = 0
        if self._plen:
            take = min(c - self._plen, n)
            pending[self._plen:self._plen + take] = mv[:take]
            self._plen += take
            pos = take
            if self._plen == c and pos < n:
                self._seal(memoryview(pending), 1)
                self._plen = 0
        # The last full chunk is held back: only close() knows which chunk is final.
        whole = (n - pos - 1) // c
        if whole > 0:
            self._seal(mv[pos:pos + whole * c], whole)
            pos += whole * c
        if pos < n:
            pending[:n - pos] = mv[pos:]
            self._plen = n - pos
        self._written += n
        return n

    def flush(self) -> None:
        # The whole chunks sealed so far go to the target; a partial chunk
        # cannot be flushed without ending the file.
        if not self.closed and not self._done:
            self._write_sealed()

    def close(self) -> None:
        if self.closed:
            return
        try:
            if not self._done:
                self._finish()
        finally:
            super().close()

    def _finish(self) -> None:
        self._done = True
        try:
            self._seal_last()
            if self._behind is not None:
                behind, self._behind = self._behind, None
                behind.close()
            if not self._header.is_default_layout:
                self._sink.write(memoryview(make_trailer(
                    self._header.chunk_log2, self._header.header_size, self._body)))
            self._sink.finish()
            if self.autocommit:
                self._publish()
        except BaseException:
            self._abort_sink()
            raise
        self._pending = None
        self._out = None
        self._free = []
        if self._on_close is not None:
            self._on_close(self._written)

    def _publish(self) -> None:
        """Make the finished object visible at its path."""
        if self._published:
            return
        self._published = True
        self._sink.publish(exclusive="x" in self.mode)

    def commit(self) -> None:
        """End of a transaction (``with fs.transaction:``): publish the closed file."""
        if not self.closed:
            self.close()
        try:
            self._publish()
        except BaseException:
            self._abort_sink()
            raise

    def discard(self) -> None:
        """Abandon the file: nothing is written at the destination."""
        if self._done:
            if self.closed and not self._published:  # a transaction rolled back
                self._published = True
                self._abort_sink()
            return
        self._done = True
        self._pending = None
        self._abort_sink()
        self._out = None
        super().close()

    def _abort_sink(self) -> None:
        """Abort the sink once no worker is writing to it any more."""
        behind, self._behind = self._behind, None
        if behind is not None:
            behind.abandon()  # its failure, if any, no longer matters
        self._sink.abort()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.discard()
        else:
            self.close()

    def __del__(self) -> None:
        # An unclosed writer was abandoned (e.g. the process is unwinding): never
        # finalize it implicitly.
        if not getattr(self, "_done", True):
            self.discard()
