"""The seekable decrypting reader (the streaming writer is in writer.py)."""
from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from fsspec.spec import AbstractBufferedFile

from . import pipeline
from .buffers import new_bytes
from .errors import LayoutError, TruncatedFileError
from .format import TAG_SIZE, TRAILER, ChunkCipher, Header, Layout

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

_MAX_SCRATCH = 4 * 2**20 + 1024  # largest ciphertext buffer kept between reads
_LOCAL_PIECE = 2**18             # bulk reads of local files: plaintext per pread
# Bulk reads of at least this much plaintext are opened on the worker threads
# (pipeline.py), in jobs of up to _JOB bytes (_REMOTE_JOB for object stores:
# one ranged request each), at least one per worker; smaller ones stay on the
# caller's thread.  Measured on two quiet cores (benchmarks/fs_throughput.py):
# streaming 1 MiB readinto calls ran 0.97-1.03x plain on the caller's thread
# but 0.54-0.82x handed to the workers (per-call hand-off and the GIL switches
# cost more than a second core gains on 1 MiB), while a whole 1 GiB read()
# gained from the workers (0.76-1.11 GB/s against 0.36-0.84).  So only reads of
# several MiB in one call go to the workers.
_PARALLEL_MIN = 2**22
_JOB = 2**20
_REMOTE_JOB = 2**22
# Sequential bulk reads of local files (the second of two consecutive ones) get
# a thread of the reader's own that reads the ciphertext ahead while this one
# opens it (pipeline.ReadAhead): 3 buffers of 2 MiB, only for files with more
# than _AHEAD_MIN still to read.  Measured in a bare prototype (256 MiB, 1 MiB
# reads): 40-44 ms against 55-60 on one thread and 30-31 for the plain file.
_AHEAD_BATCH = 2**21
_AHEAD_BUFFERS = 3
_AHEAD_MIN = 2**22


class _Source:
    """Random-access ciphertext from an open file of the wrapped filesystem."""

    def __init__(self, f: Any, size: int, prefix: bytes = b""):
        self.f = f
        self._lock = threading.Lock()  # seek + read of the file object (not pread, not views)
        self.size = size
        self._prefix = prefix  # bytes already read at open (header, small files whole)
        self._plen = len(prefix)
        # BytesIO-backed files (memory://) can be sliced without a copy; local
        # files are read with pread (one syscall, no seek, into our buffer).
        self._view: memoryview | None = f.getbuffer() if hasattr(f, "getbuffer") else None
        self._fd: int | None = None
        if self._view is None and hasattr(os, "preadv") and type(f).__name__ == "LocalFileOpener":
            try:
                self._fd = f.fileno()
            except (OSError, AttributeError, ValueError):
                self._fd = None
        # Largest request of a bulk read: local ciphertext is copied in pieces
        # that stay in the CPU cache until decrypted (measured up to 15% faster
        # than one pread per 1 MiB readinto); remote sources get one request per
        # read (0: no limit).
        self.piece = _LOCAL_PIECE if self._fd is not None else 0

    @property
    def fd(self) -> int | None:
        """The local file's descriptor (pread), or None."""
        return self._fd

    @property
    def threadsafe(self) -> bool:
        """True if reads need no lock (pread, or slices of memory)."""
        return self._fd is not None or self._view is not None

    def read(self, start: int, end: int, scratch: bytearray | None = None) -> Any:
        """Bytes [start, end); into ``scratch`` (reused, returned as a view) when given.
        Safe to call from several threads."""
        if self._fd is not None and end > self._plen:  # local files: the hot path
            n = end - start
            view = memoryview(scratch)[:n] if scratch is not None else memoryview(bytearray(n))
            got = os.preadv(self._fd, [view], start)
            while got < n:  # short reads only at the end of the file, or on signals
                k = os.preadv(self._fd, [view[got:]], start + got)
                if not k:
                    break
                got += k
            return view[:got] if got < n else view
        if self._view is not None:
            return self._view[start:end]
        if end <= self._plen:
            return memoryview(self._prefix)[start:end]
        with self._lock:
            return self._read_file(start, end, scratch)

    def _read_file(self, start: int, end: int, scratch: bytearray | None) -> Any:
        self.f.seek(start)
        if scratch is not None and hasattr(self.f, "readinto"):
            view = memoryview(scratch)[:end - start]
            got = 0
            while got < len(view):
                n = self.f.readinto(view[got:])
                if not n:
                    break
                got += n
            return view[:got]
        want = end - start
        data = self.f.read(want)
        while len(data) < want:  # short reads on some backends
            more = self.f.read(want - len(data))
            if not more:
                break
            data += more
        return data

    def close(self) -> None:
        if self._view is not None:
            self._view.release()
            self._view = None
        try:
            self.f.close()
        except Exception:  # closing a read handle loses nothing
            pass


class EncryptedReadFile(AbstractBufferedFile):
    """Read-only, seekable; decrypts only the chunks a read touches.

    Every returned byte has been authenticated.  The final chunk is checked
    (flag, trailer padding) whenever a read reaches it, so a read relative to
    the end (Parquet footers) detects truncation.  Reads of more than two
    chunks decrypt straight into the bytes they return (no copy), bulk
    ones (4 MiB and more) on the worker threads; sequential reads of a local
    file get a thread that reads the ciphertext ahead (pipeline.ReadAhead).
    """

    def __init__(self, fs: Any, path: str, source: _Source, header: Header, layout: Layout,
                 cipher: ChunkCipher, **kwargs: Any):
        self._src = source
        self.header = header
        self.layout = layout
        self._cipher = cipher
        self._c = layout.chunk_size
        self._unit = layout.chunk_size + TAG_SIZE
        self._n_last = layout.n_chunks - 1
        # The two most recently decrypted chunks live in the two halves of one
        # buffer (allocated on first use): a small read that straddles a chunk
        # boundary, and reads that alternate between neighbours, decrypt
        # nothing twice.  A two-chunk load puts them in order, so a read
        # across their boundary is one slice.
        self._pt: memoryview | None = None   # two chunks of plaintext
        self._ct: bytearray | None = None    # ciphertext of up to two chunks
        self._held = [-1, -1]                # chunk index in each half (-1: none)
        self._lru = 0                        # the half the next one-chunk load replaces
        self._bulk: bytearray | None = None  # ciphertext of multi-chunk reads, reused
        self._ahead: pipeline.ReadAhead | None = None  # reading ahead of sequential bulk reads
        self._next_bulk = -1  # the chunk after the last bulk read's
        kwargs.pop("cache_type", None)
        super().__init__(fs, path, mode="rb", cache_type="none", size=layout.plaintext_size,
                         block_size=layout.chunk_size, **kwargs)
        self.loc: int = 0
        self.details = {"name": path, "size": layout.plaintext_size, "type": "file"}

    def __repr__(self) -> str:
        return f"<EncryptedReadFile {self.path!r} size={self.size}>"

    # -- chunk access -------------------------------------------------------
    def _read_ct(self, first: int, last: int, scratch: bytearray | None = None) -> memoryview:
        """Ciphertext of chunks first..last in one request, into ``scratch`` if
        it is large enough (checks the trailer padding when the final chunk is
        included).  Safe on any thread."""
        lay = self.layout
        start = lay.header_size + first * self._unit
        if last < self._n_last:
            end = read_end = start + (last - first + 1) * self._unit
        else:
            end = lay.header_size + lay.body_size
            read_end = lay.ciphertext_size if lay.trailer_size else end
        if scratch is not None and len(scratch) < read_end - start:
            scratch = None
        ct = memoryview(self._src.read(start, read_end, scratch))  # slices below must not copy
        if len(ct) != read_end - start:
            raise TruncatedFileError("object is shorter than when it was opened", self.path)
        if read_end != end:
            pad = ct[end - start:len(ct) - TRAILER.size]
            if bytes(pad).count(0) != len(pad):
                raise LayoutError("trailer padding is not zero", self.path)
            ct = ct[:end - start]
        return ct

    def _load(self, first: int, count: int, half: int) -> None:
        """Decrypt ``count`` (1 or 2) chunks from ``first``, read in one request,
        into the halves from ``half``."""
        pt = self._pt
        if pt is None:
            pt = self._pt = memoryview(bytearray(2 * self._c))
            self._ct = bytearray(2 * self._unit)
        held = self._held
        held[half] = held[half + count - 1] = -1  # invalid until decrypted
        o = half * self._c
        ct = self._read_ct(first, first + count - 1, self._ct)
        self._cipher.open_chunks(first, ct, pt[o:o + count * self._c], self._n_last)
        held[half] = first
        held[half + count - 1] = first + count - 1

    def _half(self, index: int) -> int:
        """The half holding chunk ``index`` (decrypted into the least recently used one if needed)."""
        held = self._held
        if held[0] == index:
            h = 0
        elif held[1] == index:
            h = 1
        else:
            h = self._lru
            self._load(index, 1, h)
        self._lru = 1 - h
        return h

    def _cached(self) -> memoryview:
        assert self._pt is not None  # loaded by _half / _load
        return self._pt

    def _pair(self, first: int, start: int, end: int) -> bytes:
        """Plaintext [start, end) across the boundary of chunks first and first+1."""
        c = self._c
        held = self._held
        if first not in held and first + 1 not in held:
            self._load(first, 2, 0)
            self._lru = 0  # first is the less recently used
        else:
            a, b = self._half(first), self._half(first + 1)
            if (a, b) != (0, 1):
                pt = self._cached()
                return (pt[a * c + start - first * c:(a + 1) * c].tobytes()
                        + pt[b * c:b * c + end - (first + 1) * c])
        return self._cached()[start - first * c:end - first * c].tobytes()

    def _span(self, first: int, last: int, out: memoryview, scratch: bytearray | None) -> int:
        """Whole chunks first..last into ``out``, their ciphertext read in
        requests of at most the source's piece size; returns bytes written."""
        c = self._c
        per = max(1, self._src.piece // c) if self._src.piece else last - first + 1
        pos = 0
        i = first
        while i <= last:
            j = min(last, i + per - 1)
            ct = self._read_ct(i, j, scratch)
            pos += self._cipher.open_chunks(i, ct, out[pos:], self._n_last)
            i = j + 1
        return pos

    def _read_ahead(self, first: int, last: int) -> pipeline.ReadAhead | None:
        """The read-ahead to take chunks first.. from (started for the second of
        two consecutive bulk reads of a local file), or None."""
        sequential, self._next_bulk = self._next_bulk == first, last + 1
        ahead = self._ahead
        start = self.layout.header_size + first * self._unit
        if ahead is not None:
            if ahead.pos == start:
                return ahead
            self._stop_ahead()
        fd = self._src.fd
        if (sequential and fd is not None and (self._n_last - first) * self._c > _AHEAD_MIN
                and pipeline.workers() > 1):
            self._ahead = pipeline.ReadAhead(fd, start, self.layout.header_size + self._n_last * self._unit,
                                             _AHEAD_BUFFERS, max(1, _AHEAD_BATCH // self._c) * self._unit)
        return self._ahead

    def _stop_ahead(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.close()

    def _span_ahead(self, ahead: pipeline.ReadAhead, first: int, last: int, out: memoryview,
                    scratch: bytearray | None) -> int:
        """Whole non-final chunks first..last into ``out``, their ciphertext taken
        from the read-ahead; what it cannot give (the file shrank) is read here,
        which reports the truncation."""
        u = self._unit
        pos, i = 0, first
        while i <= last:
            ct = ahead.take((last - i + 1) * u)
            k = len(ct) // u
            if not k:
                self._stop_ahead()
                return pos + self._span(i, last, out[pos:], scratch)
            pos += self._cipher.open_chunks(i, ct[:k * u], out[pos:], self._n_last)
            i += k
        return pos

    def _bulk_scratch(self, first: int, last: int) -> bytearray | None:
        per = self._src.piece // self._c if self._src.piece else last - first + 1
        want = max(1, min(per, last - first + 1)) * self._unit
        if want > _MAX_SCRATCH:
            return None
        if self._bulk is None or len(self._bulk) < want:
            self._bulk = bytearray(want)
        return self._bulk

    def _jobs(self, first: int, last: int, out: memoryview) -> Iterator[Callable[[], int]]:
        """Jobs for the worker threads: each opens its own run of whole chunks."""
        most = (_JOB if self._src.threadsafe else _REMOTE_JOB) // self._c
        per = max(1, min(most, -(-(last - first + 1) // pipeline.workers())))
        want = min(per * self._unit, _MAX_SCRATCH)
        if self._src.piece:
            want = min(want, self._src.piece // self._c * self._unit)
        elif self._src.threadsafe:  # memory: sliced, nothing to copy
            want = 0
        for i in range(first, last + 1, per):
            j = min(last, i + per - 1)
            view = out[(i - first) * self._c:(j - first + 1) * self._c]

            def job(i: int = i, j: int = j, view: memoryview = view) -> int:
                return self._span(i, j, view, pipeline.scratch(want) if want else None)
            yield job

    def _whole_chunks(self, first: int, last: int, out: memoryview) -> int:
        """Whole chunks first..last into ``out``: on the worker threads when
        the run is large, else here."""
        if (last - first + 1) * self._c >= _PARALLEL_MIN and pipeline.workers() > 1:
            self._stop_ahead()
            self._next_bulk = last + 1
            pipeline.run_in_order(self._jobs(first, last, out))
            return (last - first + 1) * self._c if last < self._n_last else (
                (last - first) * self._c + self.layout.plaintext_size - last * self._c)
        scratch = self._bulk_scratch(first, last)
        ahead = self._read_ahead(first, last)
        if ahead is None:
            return self._span(first, last, out, scratch)
        body = min(last, self._n_last - 1)  # the final chunk (trailer checks) is read here
        pos = self._span_ahead(ahead, first, body, out, scratch) if first <= body else 0
        if last > body:
            self._stop_ahead()
            pos += self._span(last, last, out[pos:], scratch)
        return pos

    def _decrypt_into(self, start: int, end: int, out: memoryview) -> None:
        """Plaintext [start, end) into ``out`` (len end-start)."""
        c = self._c
        first, last = start // c, (end - 1) // c
        pos = 0
        # Partial leading chunk (or a range within one chunk): via the chunk cache.
        if start % c or first == last:
            h = self._half(first)
            pos = min(end, (first + 1) * c) - start
            at = h * c + start - first * c
            out[:pos] = self._cached()[at:at + pos]
            first += 1
        if first > last:
            return
        tail_partial = end % c and end < self.size
        full_last = last - 1 if tail_partial else last
        if first <= full_last:
            pos += self._whole_chunks(first, full_last, out[pos:])
        if tail_partial:
            h = self._half(last)
            out[pos:end - start] = self._cached()[h * c:h * c + end - last * c]

    def read(self, length: int = -1) -> bytes:
        """Like AbstractBufferedFile.read, without the cache layer (chunks are
        cached here).  Reads of more than two chunks decrypt straight into the
        bytes they return, without a copy (peak memory: the result plus
        bounded buffers; see buffers.py)."""
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        start = self.loc
        end = self.size
        if length is not None and 0 <= length < end - start:
            end = start + length
        if start >= end:
            return b""
        c = self._c
        first = start // c
        last = (end - 1) // c
        if first == last:  # the common small read: one slice of a cached chunk
            at = (self._half(first) - first) * c
            out = self._cached()[at + start:at + end].tobytes()
        elif last == first + 1:
            out = self._pair(first, start, end)
        else:
            out = new_bytes(end - start, lambda view: self._decrypt_into(start, end, view))
        self.loc = end
        return out

    def readinto(self, b: Any) -> int:
        """Decrypts straight into the caller's buffer (no intermediate copy)."""
        out = memoryview(b).cast("B")
        start = self.loc
        end = min(self.size, start + len(out))
        if start >= end:
            return 0
        self._decrypt_into(start, end, out[:end - start])
        self.loc = end
        return end - start

    def close(self) -> None:
        if not self.closed:
            self._stop_ahead()
            self._src.close()
            self._pt = None
            self._ct = self._bulk = None
            self._held = [-1, -1]
        super().close()
