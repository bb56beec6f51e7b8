"""File objects: a seekable decrypting reader and a streaming encrypting writer."""
from __future__ import annotations

import io
import os
import uuid

from cryptography.exceptions import InvalidTag
from fsspec.spec import AbstractBufferedFile

from .errors import LayoutError, TruncatedFileError
from .format import NONCE as _NONCE
from .format import TAG_SIZE, TRAILER, ChunkCipher, Header, Layout, make_trailer


_MAX_SCRATCH = 4 * 2**20 + 1024  # largest ciphertext buffer kept between reads
# Plaintext encrypted per target write (at least one chunk).  One write per
# 512 KiB instead of per 64 KiB chunk measured ~1.3x faster on local files;
# the writer's memory is this batch plus the one chunk it holds back.
_BATCH = 2**19
_MEMORY_BATCH = 2**16


class _Source:
    """Random-access ciphertext from an open file of the wrapped filesystem."""

    def __init__(self, f, size: int, prefix: bytes = b""):
        self.f = f
        self.size = size
        self._prefix = prefix  # bytes already read at open (header, small files whole)
        # BytesIO-backed files (memory://) can be sliced without a copy; local
        # files are read with pread (one syscall, no seek, into our buffer).
        self._view = f.getbuffer() if hasattr(f, "getbuffer") else None
        self._fd = None
        if self._view is None and hasattr(os, "preadv") and type(f).__name__ == "LocalFileOpener":
            try:
                self._fd = f.fileno()
            except (OSError, AttributeError, ValueError):
                self._fd = None

    def read(self, start: int, end: int, scratch: bytearray | None = None):
        """Bytes [start, end); into ``scratch`` (reused, returned as a view) when given."""
        if self._view is not None:
            return self._view[start:end]
        if end <= len(self._prefix):
            return memoryview(self._prefix)[start:end]
        if self._fd is not None:
            n = end - start
            view = memoryview(scratch if scratch is not None else bytearray(n))[:n]
            got = 0
            while got < n:
                k = os.preadv(self._fd, [view[got:]], start + got)
                if not k:
                    break
                got += k
            return view[:got]
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

    def close(self):
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
    the end (Parquet footers) detects truncation.
    """

    def __init__(self, fs, path: str, source: _Source, header: Header, layout: Layout,
                 cipher: ChunkCipher, **kwargs):
        self._src = source
        self.header = header
        self.layout = layout
        self._cipher = cipher
        # The two most recently decrypted chunks, most recent first: a small
        # read that straddles a chunk boundary, and reads that alternate
        # between neighbours, decrypt nothing twice.  Buffers are allocated
        # on first use and reused.
        self._slots: list[list] = [[-1, 0, None], [-1, 0, None]]  # [index, length, view]
        self._ct_scratch = None  # ciphertext of up to two chunks
        self._bulk = None        # ciphertext of multi-chunk reads, reused
        kwargs.pop("cache_type", None)
        super().__init__(fs, path, mode="rb", cache_type="none", size=layout.plaintext_size,
                         block_size=layout.chunk_size, **kwargs)
        self.details = {"name": path, "size": layout.plaintext_size, "type": "file"}

    def __repr__(self) -> str:
        return f"<EncryptedReadFile {self.path!r} size={self.size}>"

    # -- chunk access -------------------------------------------------------
    def _chunk_ct_range(self, first: int, last: int) -> tuple[int, int]:
        lay = self.layout
        end = min(lay.header_size + lay.body_size, lay.chunk_offset(last + 1))
        return lay.chunk_offset(first), end

    def _read_ct(self, first: int, last: int, scratch: bytearray | None = None):
        start, end = self._chunk_ct_range(first, last)
        lay = self.layout
        final = last == lay.n_chunks - 1
        read_end = lay.ciphertext_size if final and lay.trailer_size else end
        ct = self._src.read(start, read_end, scratch if read_end - start <= len(scratch or b"") else None)
        if len(ct) != read_end - start:
            raise TruncatedFileError("object is shorter than when it was opened", self.path)
        if read_end != end:
            pad = memoryview(ct)[end - start:len(ct) - TRAILER.size]
            if bytes(pad).count(0) != len(pad):
                raise LayoutError("trailer padding is not zero", self.path)
            ct = memoryview(ct)[:end - start]
        return ct

    def _chunk(self, index: int) -> memoryview:
        """One whole chunk's plaintext (a view of a reused buffer, valid until
        two other chunks have been loaded)."""
        slots = self._slots
        s0 = slots[0]
        if s0[0] == index:
            return s0[2][:s0[1]]
        s1 = slots[1]
        if s1[0] != index:
            self._load(index, index)
            s1 = slots[0]
        else:
            slots[0], slots[1] = s1, s0
        return s1[2][:s1[1]]

    def _load(self, first: int, last: int) -> None:
        """Decrypt chunks first..last (one or two, read in one request) into the slots."""
        lay = self.layout
        unit = lay.chunk_size + TAG_SIZE
        slots = self._slots
        # Buffers grow on demand: a handle opened for one small read allocates one chunk's worth.
        if self._ct_scratch is None or len(self._ct_scratch) < (last - first + 1) * unit:
            self._ct_scratch = bytearray((last - first + 1) * unit)
        n_last = lay.n_chunks - 1
        if last < n_last:
            # Not the final chunk (the common case): whole units, no trailer to check.
            start = lay.header_size + first * unit
            want = (last - first + 1) * unit
            ct = self._src.read(start, start + want, self._ct_scratch)
            if len(ct) != want:
                raise TruncatedFileError("object is shorter than when it was opened", self.path)
        else:
            ct = self._read_ct(first, last, self._ct_scratch)
        if not isinstance(ct, memoryview):
            ct = memoryview(ct)  # slices below must not copy
        cipher = self._cipher
        aead = cipher.aead
        off = 0
        for i in range(first, last + 1):
            slot = slots[1]  # least recently used; invalid until decrypted
            slot[0] = -1
            if slot[2] is None:
                slot[2] = memoryview(bytearray(lay.chunk_size))
            if i < n_last:
                # Inline ChunkCipher.decrypt_into (the per-read cost matters for small chunks).
                try:
                    aead.decrypt_into(_NONCE.pack(i, 0), ct[off:off + unit], None, slot[2])
                except InvalidTag:
                    raise cipher.failure(i, False, ct[off:off + unit]) from None
                n = lay.chunk_size
            else:
                n = len(ct) - off - TAG_SIZE
                cipher.decrypt_into(i, True, ct[off:], slot[2][:n])
            off += unit
            slot[0], slot[1] = i, n
            slots[0], slots[1] = slot, slots[0]

    def _decrypt_into(self, start: int, end: int, out: memoryview) -> None:
        """Plaintext [start, end) into ``out`` (len end-start)."""
        c = self.layout.chunk_size
        first, last = start // c, (end - 1) // c
        n_last = self.layout.n_chunks - 1
        pos = 0
        # Partial leading chunk (or a range within one chunk): via the chunk cache.
        if start % c or first == last:
            chunk = self._chunk(first)
            piece = chunk[start - first * c:min(end - first * c, len(chunk))]
            out[:len(piece)] = piece
            pos = len(piece)
            first += 1
        if first > last:
            return
        tail_partial = end % c and end < self.layout.plaintext_size
        full_last = last - 1 if tail_partial else last
        if first <= full_last:
            want = (full_last - first + 1) * (c + TAG_SIZE)
            if want <= _MAX_SCRATCH and (self._bulk is None or len(self._bulk) < want):
                self._bulk = bytearray(want)
            ct = memoryview(self._read_ct(first, full_last,
                                          self._bulk if want <= _MAX_SCRATCH else None))
            unit = c + TAG_SIZE
            off = 0
            for i in range(first, full_last + 1):
                clen = min(unit, len(ct) - off)
                self._cipher.decrypt_into(i, i == n_last, ct[off:off + clen],
                                          out[pos:pos + clen - TAG_SIZE])
                off += clen
                pos += clen - TAG_SIZE
        if tail_partial:
            chunk = self._chunk(last)
            out[pos:end - start] = chunk[:end - last * c]

    def _fetch_range(self, start: int, end: int) -> bytes:
        end = min(end, self.size)
        if start >= end:
            return b""
        c = self.layout.chunk_size
        first, last = start // c, (end - 1) // c
        if first == last:
            return bytes(self._chunk(first)[start - first * c:end - first * c])
        if last == first + 1:  # small reads across a boundary: both chunks, one request
            s0, s1 = self._slots
            if s0[0] == last and s1[0] == first:
                pass
            elif s0[0] not in (first, last) and s1[0] not in (first, last):
                self._load(first, last)  # leaves last in slot 0, first in slot 1
                s0, s1 = self._slots
            else:
                head = self._chunk(first)[start - first * c:].tobytes()
                return head + self._chunk(last)[:end - last * c]
            return s1[2][start - first * c:s1[1]].tobytes() + s0[2][:end - last * c]
        buf = bytearray(end - start)
        self._decrypt_into(start, end, memoryview(buf))
        return bytes(buf)

    def read(self, length: int = -1) -> bytes:
        """Like AbstractBufferedFile.read, without the cache layer (chunks are cached here)."""
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        remaining = self.size - self.loc
        length = remaining if length is None or length < 0 else min(length, remaining)
        if length <= 0:
            return b""
        out = self._fetch_range(self.loc, self.loc + length)
        self.loc += len(out)
        return out

    def readinto(self, b) -> int:
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
            self._src.close()
            self._slots = [[-1, 0, None], [-1, 0, None]]
        super().close()


class EncryptedWriteFile(io.BufferedIOBase):
    """Streaming writer: memory stays at about two chunks plus the target's buffer.

    The object (or a temporary sibling, moved into place on close) only becomes
    valid when ``close()`` writes the final chunk; leaving a ``with`` block by
    an exception discards it, and an interrupted writer leaves no final chunk,
    so a half-written object never reads as valid.
    """

    def __init__(self, efs, path: str, mode: str, header: Header, cipher: ChunkCipher,
                 on_close=None, autocommit: bool = True, **open_kwargs):
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
        self._pending = bytearray(self._c)
        self._plen = 0
        self._index = 0
        self._out = None
        self._olen = 0
        self._written = 0
        self._body = 0
        self._done = True  # nothing to discard until the sink exists
        inner = efs.fs
        self._direct = efs._writes_are_atomic
        if "x" in mode and inner.exists(path):
            raise FileExistsError(path)
        self._memory = type(inner).__name__ == "MemoryFileSystem" and hasattr(inner, "_intrans")
        # Chunks are encrypted into batches of about _BATCH bytes, one target
        # write each; allocated at the first chunk (a one-chunk file gets an
        # exact-size buffer).  memory:// takes 64 KiB at a time: its write is
        # a copy, faster from a buffer that is still in the CPU cache.
        batch = _MEMORY_BATCH if self._memory else _BATCH
        self._batch_size = max(1, batch // self._c) * (self._c + TAG_SIZE)
        if self._memory:
            # memory:// commits a file when it is opened; open it as inside a
            # transaction and commit in close(), so a failed write changes nothing.
            self._target = path
            was, inner._intrans = inner._intrans, True
            try:
                self._sink = inner._open(path, mode)
            finally:
                inner._intrans = was
        elif self._direct:
            self._target = path
            self._sink = inner.open(path, mode, autocommit=autocommit, **open_kwargs)
        else:
            parent, _, name = path.rpartition("/")
            self._target = f"{parent}/.{name}.{uuid.uuid4().hex[:12]}.kfse-tmp"
            self._sink = inner.open(self._target, "wb", **open_kwargs)
        self._done = False
        try:
            self._sink.write(header.encode())
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

    def _emit(self, data, last: bool) -> None:
        """Encrypt one chunk into the batch; a full batch (or the last chunk) goes to the target."""
        out = self._out
        o = self._olen
        if out is None:
            out = self._out = bytearray(len(data) + TAG_SIZE if last else self._batch_size)
        n = self._cipher.encrypt_into(self._index, last, data,
                                      memoryview(out)[o:o + len(data) + TAG_SIZE])
        self._olen = o = o + n
        self._body += n
        self._index += 1
        if last or o + self._c + TAG_SIZE > len(out):
            self._sink.write(memoryview(out)[:o])
            self._olen = 0

    def write(self, data) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        mv = memoryview(data).cast("B")
        n = len(mv)
        c = self._c
        pos = 0
        if self._plen:
            take = min(c - self._plen, n)
            self._pending[self._plen:self._plen + take] = mv[:take]
            self._plen += take
            pos = take
            if self._plen == c and pos < n:
                self._emit(self._pending, False)
                self._plen = 0
        # The last full chunk is held back: only close() knows which chunk is final.
        while n - pos > c:
            self._emit(mv[pos:pos + c], False)
            pos += c
        if pos < n:
            self._pending[:n - pos] = mv[pos:]
            self._plen = n - pos
        self._written += n
        return n

    def flush(self) -> None:
        # Chunks are written as soon as they are complete; a partial chunk
        # cannot be flushed without ending the file.
        if self.closed:
            return

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
            self._emit(memoryview(self._pending)[:self._plen], True)
            if not self._header.is_default_layout:
                self._sink.write(make_trailer(self._header.chunk_log2, self._header.header_size,
                                              self._body))
            if not self._memory:
                self._sink.close()
            if self.autocommit:
                self._publish()
        except BaseException:
            self._abort()
            raise
        self._pending = self._out = None
        if self._on_close is not None:
            self._on_close(self._written)

    def _publish(self) -> None:
        """Make the finished object visible at its path."""
        if self._published:
            return
        self._published = True
        if self._memory:
            if "x" in self.mode and self.fs.fs.exists(self.path):
                raise FileExistsError(self.path)
            self._sink.commit()
        elif self._direct:
            if not self.autocommit:
                self._sink.commit()
        else:
            self.fs._commit_temp(self._target, self.path, exclusive="x" in self.mode)

    def commit(self) -> None:
        """End of a transaction (``with fs.transaction:``): publish the closed file."""
        if not self.closed:
            self.close()
        try:
            self._publish()
        except BaseException:
            self._abort()
            raise

    def _abort(self) -> None:
        sink = self._sink
        try:
            if hasattr(sink, "discard"):
                sink.discard()
            if hasattr(sink, "_closed"):
                sink.closed = True  # stop AbstractBufferedFile.__del__ from committing
            elif not getattr(sink, "closed", True):
                sink.close()
        except Exception:
            pass
        if not (self._direct or self._memory):
            try:
                self.fs.fs.rm_file(self._target)
            except Exception:
                pass

    def discard(self) -> None:
        """Abandon the file: nothing is written at the destination."""
        if self._done:
            if self.closed and not self._published:  # a transaction rolled back
                self._published = True
                self._abort()
            return
        self._done = True
        self._pending = self._out = None
        self._abort()
        super().close()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.discard()
        else:
            self.close()

    def __del__(self):
        # An unclosed writer was abandoned (e.g. the process is unwinding): never
        # finalize it implicitly.
        if not getattr(self, "_done", True):
            self.discard()
