"""Bulk reads and writes on worker threads: same bytes, same errors, bounded memory (issue #14)."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrations.encrypted_fs import ChunkAuthenticationError, EncryptedFileSystem, TruncatedFileError, pipeline
from integrations.encrypted_fs import format as F

C = F.DEFAULT_CHUNK_SIZE
U = C + F.TAG_SIZE
H = F.DEFAULT_HEADER_SIZE
MiB = 2**20


@pytest.fixture(autouse=True)
def small_handoff(monkeypatch):
    """Hand reads and writes of 512 KiB and more to the workers (production: 4 MiB), so
    that this file's sizes exercise the threaded paths."""
    from integrations.encrypted_fs import files, writer

    monkeypatch.setattr(files, "_PARALLEL_MIN", 2**19)
    monkeypatch.setattr(writer, "_PARALLEL_MIN", 2**19)


@pytest.fixture(params=[1, 3], ids=["one-thread", "three-workers"])
def workers(request, monkeypatch):
    monkeypatch.setattr(pipeline, "workers", lambda: request.param)
    return request.param


def _reference(efs, path, data, chunk_size):
    raw = efs.fs.cat_file(path)
    header = F.Header.parse(raw)
    key = efs.keys.unwrap(header.key_id, header.wrapped_key, header.context)
    return raw == F.encrypt_bytes(data, key, header.wrapped_key, header.key_id, header.context,
                                  chunk_size, header.salt)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(["mem_efs", "local_efs"]), chunk_size=st.sampled_from([4096, C]),
       n_workers=st.sampled_from([1, 2, 3]),
       pieces=st.lists(st.one_of(st.integers(0, 3 * C), st.integers(8 * C, 40 * C)),
                       min_size=1, max_size=5),
       reads=st.lists(st.tuples(st.integers(0, 3 * MiB), st.integers(0, 3 * MiB)), max_size=4))
def test_threaded_paths_are_the_reference_encoding(request, monkeypatch, where, chunk_size,
                                                    n_workers, pieces, reads):
    """Writes large enough for the worker threads give byte for byte the
    format's encoding (F.encrypt_bytes, the reference), and reads of any
    span give the plaintext, with one to three workers."""
    base = request.getfixturevalue(where)
    efs = EncryptedFileSystem(fs=base.fs, kms_client=base.keys.client, chunk_size=chunk_size,
                              skip_instance_cache=True)
    data = random.Random(sum(pieces)).randbytes(sum(pieces))
    path = f"{base.root}/t{chunk_size}"
    with monkeypatch.context() as m:
        m.setattr(pipeline, "workers", lambda: n_workers)
        buf = bytearray(max(pieces))
        with efs.open(path, "wb") as f:
            pos = 0
            for n in pieces:
                buf[:n] = data[pos:pos + n]
                f.write(memoryview(buf)[:n])
                buf[:n] = bytes(n)  # the writer kept no reference to it
                pos += n
        assert _reference(efs, path, data, chunk_size)
        assert efs.cat_file(path) == data
        with efs.open(path, "rb") as f:
            for start, length in reads:
                f.seek(min(start, len(data)))
                got = f.read(length)
                assert got == data[start:start + length]
                out = bytearray(length)
                f.seek(min(start, len(data)))
                n = f.readinto(out)
                assert out[:n] == data[start:start + length]


def _big(efs, name, n_chunks=40):
    data = os.urandom(n_chunks * C - 123)
    path = f"{efs.root}/{name}"
    efs.pipe_file(path, data)
    return path, data, efs.fs.cat_file(path)


def _flip(raw, index, at=5):
    pos = H + index * U + at
    return raw[:pos] + bytes([raw[pos] ^ 1]) + raw[pos + 1:]


@pytest.mark.parametrize("which", ["mem_efs", "local_efs"])
def test_a_tampered_chunk_fails_a_bulk_read_at_that_chunk(which, request, workers):
    """The first failing chunk in file order is named (chunk 30 failing sooner
    on another thread changes nothing), and a caller's buffer never holds the
    failing chunk's unauthenticated plaintext (AESGCM.decrypt_into leaves it
    there): its bytes are zeroed, those before it are authenticated."""
    efs = request.getfixturevalue(which)
    path, data, raw = _big(efs, "tampered")
    efs.fs.pipe_file(path, _flip(_flip(raw, 17), 30))
    with pytest.raises(ChunkAuthenticationError, match="chunk 17 failed"):
        efs.cat_file(path)
    with efs.open(path, "rb") as f:
        with pytest.raises(ChunkAuthenticationError, match="chunk 17 failed"):
            f.read()
        f.seek(0)
        out = bytearray(len(data))
        with pytest.raises(ChunkAuthenticationError, match="chunk 17 failed"):
            f.readinto(out)
    assert out[:17 * C] == data[:17 * C]
    assert out[17 * C:18 * C] == bytes(C)
    for index in range(18, 40):  # whatever else a worker decrypted is authentic
        part = out[index * C:(index + 1) * C]
        assert part in (data[index * C:(index + 1) * C], bytes(len(part))) or index == 30


@pytest.mark.parametrize("which", ["mem_efs", "local_efs"])
def test_a_truncated_big_file_fails_a_bulk_read(which, request, workers):
    efs = request.getfixturevalue(which)
    path, _data, raw = _big(efs, "cut")
    efs.fs.pipe_file(path, raw[:H + 25 * U])
    with pytest.raises(TruncatedFileError):
        efs.cat_file(path)


def test_run_in_order_raises_the_first_failure_after_every_started_job_ends():
    finished = []

    def job(i):
        def run():
            if i == 1:
                time.sleep(0.05)
                finished.append(i)
                raise ValueError("job 1")
            if i == 2:
                finished.append(i)
                raise KeyError("job 2")  # fails first in time, later in order
            time.sleep(0.01)
            finished.append(i)
            return i
        return run
    seen = []
    with pytest.raises(ValueError, match="job 1"):
        pipeline.run_in_order((job(i) for i in range(50)), seen.append)
    assert seen == [0]
    settled = list(finished)
    time.sleep(0.1)
    assert finished == settled  # nothing still running after the raise
    assert len(finished) <= 1 + pipeline.window()
    assert threading.active_count() < 50


_WHOLE_READ = """
import os, sys, tracemalloc
from integrations.encrypted_fs import EncryptedFileSystem


class KMS:
    def __init__(self):
        self.keys = {}

    def generate_data_key(self, KeyId, KeySpec, EncryptionContext):
        dk = os.urandom(32)
        self.keys[dk[:8] * 8] = dk
        return {"Plaintext": dk, "CiphertextBlob": dk[:8] * 8, "KeyId": KeyId}

    def decrypt(self, CiphertextBlob, EncryptionContext, KeyId=None):
        return {"Plaintext": self.keys[CiphertextBlob], "KeyId": "k"}


size = 64 * 2**20
efs = EncryptedFileSystem(target_protocol="file", kms_client=KMS(), skip_instance_cache=True)
path = sys.argv[1] + "/whole"
with efs.open(path, "wb") as f:
    f.write(os.urandom(size))
efs.cat_file(path, 0, 10)  # keys cached, imports done
peaks = []
for how in ("cat_file", "read"):
    tracemalloc.start()
    if how == "cat_file":
        got = efs.cat_file(path)
    else:
        with efs.open(path, "rb") as f:
            got = f.read()
    peaks.append(tracemalloc.get_traced_memory()[1])
    assert len(got) == size
    del got
    tracemalloc.stop()
print(size, *peaks, type(efs.cat_file(path)).__name__)
"""


def test_whole_file_reads_hold_the_file_once(tmp_path):
    """read() and cat_file of a whole file return the bytes they decrypted
    into: the peak is the file plus bounded buffers, not twice the file.
    (tracemalloc in a process of its own; the benchmark measures peak RSS.)"""
    out = subprocess.run([sys.executable, "-c", _WHOLE_READ, str(tmp_path)], check=True,
                         capture_output=True, text=True, timeout=120).stdout.split()
    size, peak_cat, peak_read = map(int, out[:3])
    assert out[3] == "bytes"
    for peak in (peak_cat, peak_read):
        assert peak < 1.1 * size, (peak, size)


# -- write-behind: full batches written by a thread of the writer's own ------------------

@pytest.fixture
def threads():
    """The live threads of a name started since the test began (another test's
    leftovers, if any, are not this test's business)."""
    before = set(threading.enumerate())

    def started(name: str) -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == name and t not in before and t.is_alive()]
    return started


@pytest.fixture
def behind_only(monkeypatch):
    """Every write is sealed on the caller's thread (no worker jobs), two workers
    allowed, small write-behind batches: many batches go through the writer's thread."""
    from integrations.encrypted_fs import writer

    monkeypatch.setattr(writer, "_PARALLEL_MIN", 2**40)
    monkeypatch.setattr(writer, "_BEHIND_BATCH", 2 * C)
    monkeypatch.setattr(pipeline, "workers", lambda: 2)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(0, 5 * C), min_size=1, max_size=40), flushes=st.sets(st.integers(0, 39)))
def test_write_behind_gives_the_reference_encoding(local_efs, behind_only, sizes, flushes, threads):
    """Writes of any sizes, with flushes between them, through the write-behind
    thread: byte for byte the format's encoding, and the caller's buffer is
    free again when write() returns."""
    data = random.Random(len(sizes)).randbytes(sum(sizes))
    path = f"{local_efs.root}/behind"
    buf = bytearray(max(sizes))
    with local_efs.open(path, "wb") as f:
        pos = 0
        for i, n in enumerate(sizes):
            buf[:n] = data[pos:pos + n]
            f.write(memoryview(buf)[:n])
            buf[:n] = bytes(n)
            pos += n
            if i in flushes:
                f.flush()
    assert _reference(local_efs, path, data, C)
    assert local_efs.cat_file(path) == data
    assert not threads("kms-fs-writer")


def test_write_behind_starts_only_past_one_batch(local_efs, behind_only, threads):
    from integrations.encrypted_fs import writer

    with local_efs.open(f"{local_efs.root}/small", "wb") as f:
        f.write(os.urandom(writer._BATCH))  # the last chunk is held back: no full batch yet
        assert f._behind is None and not threads("kms-fs-writer")
        f.write(os.urandom(2 * writer._BATCH))
        assert f._behind is not None and len(threads("kms-fs-writer")) == 1
    assert not threads("kms-fs-writer")


@pytest.mark.parametrize("fail_at", [2, 3, 6])
def test_a_failing_write_behind_fails_the_file_and_publishes_nothing(local_efs, behind_only, monkeypatch,
                                                                     fail_at, threads):
    """The sink's write fails (call 1 writes the header, 2 the first batch on the
    caller's thread, the next ones on the write-behind thread): a later write()
    or close() raises that error, nothing appears at the path, the temporary is
    gone and the thread has ended."""
    from integrations.encrypted_fs import localtemp

    calls = []
    real = localtemp.LockedTemp.write

    def failing(self, data):
        calls.append(threading.current_thread().name)
        if len(calls) == fail_at:
            raise OSError(28, "No space left on device")
        return real(self, data)
    monkeypatch.setattr(localtemp.LockedTemp, "write", failing)
    path = f"{local_efs.root}/full"
    with pytest.raises(OSError, match="No space left"), local_efs.open(path, "wb") as f:
        for _ in range(40):
            f.write(os.urandom(C + 7))
    assert calls[fail_at - 1] == ("MainThread" if fail_at == 2 else "kms-fs-writer")
    assert not os.path.exists(path)
    assert not [n for n in os.listdir(local_efs.root) if n.endswith(localtemp.TEMP_SUFFIX)]
    assert not threads("kms-fs-writer")


def test_discarding_a_writer_stops_its_write_behind(local_efs, behind_only, threads):
    path = f"{local_efs.root}/dropped"
    with pytest.raises(RuntimeError), local_efs.open(path, "wb") as f:
        f.write(os.urandom(20 * C))
        assert threads("kms-fs-writer")
        raise RuntimeError("the application gave up")
    assert not os.path.exists(path) and not threads("kms-fs-writer")
    assert not os.listdir(local_efs.root)


def test_one_worker_means_no_write_behind(local_efs, monkeypatch, threads):
    monkeypatch.setattr(pipeline, "workers", lambda: 1)
    with local_efs.open(f"{local_efs.root}/one", "wb") as f:
        f.write(os.urandom(3 * MiB))
        assert f._behind is None and not threads("kms-fs-writer")


# -- read-ahead: sequential bulk reads of local files ----------------------------------

@pytest.fixture
def ahead_small(monkeypatch):
    """Read-ahead for files of more than 4 chunks, in buffers of 3 chunks, two workers."""
    from integrations.encrypted_fs import files

    monkeypatch.setattr(files, "_AHEAD_MIN", 4 * C)
    monkeypatch.setattr(files, "_AHEAD_BATCH", 3 * C)
    monkeypatch.setattr(files, "_PARALLEL_MIN", 2**40)
    monkeypatch.setattr(pipeline, "workers", lambda: 2)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.integers(1, 5 * C), st.booleans(), st.integers(0, 40 * C)),
                      min_size=1, max_size=25))
def test_read_ahead_gives_the_plaintext_whatever_the_reads(local_efs, ahead_small, steps, threads):
    """readinto/read of any sizes, sequential or after a seek anywhere: the
    plaintext, and no reader thread is left once the file is closed."""
    path = f"{local_efs.root}/ahead"
    if not local_efs.exists(path):
        local_efs.pipe_file(path, random.Random(7).randbytes(40 * C - 99))
    data = random.Random(7).randbytes(40 * C - 99)
    with local_efs.open(path, "rb") as f:
        for size, seek, where in steps:
            if seek:
                f.seek(min(where, len(data)))
            at = f.tell()
            out = bytearray(size)
            n = f.readinto(out)
            assert out[:n] == data[at:at + size]
    assert not threads("kms-fs-reader")


def test_read_ahead_starts_on_the_second_sequential_bulk_read(local_efs, ahead_small, threads):
    path, data, _raw = _big(local_efs, "seq")
    with local_efs.open(path, "rb") as f:
        assert f.read(3 * C) == data[:3 * C] and f._ahead is None  # (a read of two chunks is not bulk)
        assert f.read(3 * C) == data[3 * C:6 * C] and f._ahead is not None
        assert len(threads("kms-fs-reader")) == 1
        f.seek(C // 2)  # elsewhere: the read-ahead stops
        assert f.read(3 * C) == data[C // 2:C // 2 + 3 * C] and f._ahead is None
        assert not threads("kms-fs-reader")


def test_a_tampered_chunk_fails_a_read_ahead_at_that_chunk(local_efs, ahead_small, threads):
    """Read-ahead hands over ciphertext only: chunk 17 fails the read that
    reaches it, the reads before it return authentic bytes."""
    path, data, raw = _big(local_efs, "tampered-ahead")
    local_efs.fs.pipe_file(path, _flip(raw, 17))
    got = bytearray()
    ahead = []
    with local_efs.open(path, "rb") as f, pytest.raises(ChunkAuthenticationError, match="chunk 17 failed"):
        while True:
            got += f.read(3 * C)  # chunks 15-17 fail
            ahead.append(f._ahead is not None)
    assert got == data[:15 * C]
    assert ahead[1:] == [True] * 4
    assert not threads("kms-fs-reader")


def test_a_file_cut_under_a_read_ahead_fails_as_truncated(local_efs, ahead_small, threads):
    """The file shrinks after the read-ahead started: the read that reaches the
    missing bytes raises TruncatedFileError (no hang, no short plaintext)."""
    path, data, raw = _big(local_efs, "cut-ahead")
    with local_efs.open(path, "rb") as f:
        assert f.read(3 * C) + f.read(3 * C) == data[:6 * C]
        assert f._ahead is not None
        os.truncate(path, H + 25 * U)
        with pytest.raises(TruncatedFileError):
            while f.read(3 * C):
                pass
    assert not threads("kms-fs-reader")


def test_one_worker_means_no_read_ahead(local_efs, ahead_small, monkeypatch, threads):
    monkeypatch.setattr(pipeline, "workers", lambda: 1)
    path, data, _raw = _big(local_efs, "one")
    with local_efs.open(path, "rb") as f:
        assert f.read(3 * C) + f.read(3 * C) + f.read(3 * C) == data[:9 * C]
        assert f._ahead is None and not threads("kms-fs-reader")
