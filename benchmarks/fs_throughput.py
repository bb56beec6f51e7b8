"""Throughput and memory of the fsspec `encrypted` filesystem, side by side with its peers.

    python benchmarks/fs_throughput.py [--size-mib 256] [--repeat 3] [--cores 2] [--whole-mib 1024]
                                       [--skip-random] [--skip-whole] [--quick]

Prints, in one run on the first ``--cores`` CPUs (default 2):
  1. a payload streamed (1 MiB writes / readinto) through encrypted::memory:// vs plain
     memory://, with the worker threads (pipeline.py) and with them off, and vs
     aws-encryption-sdk (its defaults: committing ECDSA-P384 suite, 4 KiB frames) on 64 MiB;
  2. encrypted local files vs plain local files (new files; fsync on, the default, and off,
     next to a plain write + fsync), threads on and off;
  3. the floor these allow: AES-GCM alone over the payload (64 KiB chunks, reused buffers) on
     one thread and split over the cores, and plain I/O + AES-GCM shared by the cores;
  4. a random 4 KiB read from a 256 MiB file, plain vs encrypted with 64 KiB and 4 KiB chunks
     (no thread hand-off on this path);
  5. KMS calls made while writing 1,000 small files with the data-key cache on;
  6. whether AESGCM releases the GIL (cryptography >= 50 does);
  7. whole-file reads of --whole-mib (1 GiB): read() and cat_file, plain vs encrypted, each in
     a fresh process that reports its peak RSS above its RSS before the read (VmHWM reset via
     /proc/self/clear_refs) and its throughput.
Figures are best-of-N wall-clock; the sides of each comparison run interleaved (A B A B …),
so that load on the shared machine hits all alike; ratios compare runs made here, now.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

MiB = 2**20


def interleaved(fns, repeat: int, setups=None) -> list[list[float]]:
    """Wall seconds of every run of each function, runs interleaved."""
    wall: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            if setups and setups[i]:
                setups[i]()  # untimed
            t0 = time.perf_counter()
            fn()
            wall[i].append(time.perf_counter() - t0)
    return wall


def split_over(part, n: int, threads: int) -> None:
    """``part(lo, hi)`` over [0, n) cut into ``threads`` runs: one on this thread, the rest on
    threads of their own."""
    bounds = [n * i // threads for i in range(threads + 1)]
    ths = [threading.Thread(target=part, args=(bounds[i], bounds[i + 1])) for i in range(1, threads)]
    for t in ths:
        t.start()
    part(bounds[0], bounds[1])
    for t in ths:
        t.join()


def gbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e9


class Counting:
    """Counts calls made through a real KMS client."""

    def __init__(self, client):
        self._client, self.calls = client, 0

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if callable(attr) and not name.startswith("_"):
            def call(*a, **kw):
                self.calls += 1
                return attr(*a, **kw)
            return call
        return attr


def stream_write(fs, path, payload: memoryview, piece=MiB):
    with fs.open(path, "wb") as f:
        for i in range(0, len(payload), piece):
            f.write(payload[i:i + piece])


def stream_read(fs, path, buf: bytearray):
    view = memoryview(buf)
    total = 0
    with fs.open(path, "rb") as f:
        while True:
            n = f.readinto(view)
            if not n:
                break
            total += n
    return total


@contextlib.contextmanager
def one_thread():
    """The filesystem with its worker threads off (everything on the caller's thread)."""
    from integrations.encrypted_fs import pipeline
    real = pipeline.workers
    pipeline.workers = lambda: 1
    try:
        yield
    finally:
        pipeline.workers = real


def single(fn):
    def run():
        with one_thread():
            fn()
    return run


def aes_over(aead, payload: memoryview, threads: int, decrypt: bool, ct: memoryview | None = None):
    """AES-GCM over the payload in 64 KiB chunks into reused 1 MiB buffers, split over threads."""
    chunk, unit = 65536, 65536 + 16
    n = len(payload) // chunk

    def part(lo, hi):
        out = memoryview(bytearray(16 * unit))
        for k in range(lo, hi):
            o = k % 16
            if decrypt:
                aead.decrypt_into(bytes(12), ct[:unit], None, out[o * chunk:(o + 1) * chunk])
            else:
                aead.encrypt_into(bytes(12), payload[k * chunk:(k + 1) * chunk], None,
                                  out[o * unit:(o + 1) * unit])
    split_over(part, n, threads)


def bare_read(path, nbytes, aead, threads):
    """The floor of an encrypted local read: pread + AES-GCM open of 64 KiB chunks
    (of bare_write's file: one key and nonce, which costs AES-GCM the same) split
    over threads, no fsspec, no Python beyond one loop iteration per chunk."""
    unit, chunk = 65536 + 16, 65536
    n = nbytes // unit
    fd = os.open(path, os.O_RDONLY)

    def part(lo, hi):
        scratch = memoryview(bytearray(4 * unit))
        out = memoryview(bytearray(16 * chunk))
        for k in range(lo, hi, 4):
            m = min(4, hi - k)
            os.preadv(fd, [scratch[:m * unit]], 1024 + k * unit)
            for j in range(m):
                o = (k + j) % 16
                aead.decrypt_into(bytes(12), scratch[j * unit:(j + 1) * unit], None,
                                  out[o * chunk:(o + 1) * chunk])
    split_over(part, n, threads)
    os.close(fd)


def bare_write(path, payload, aead, threads):
    """The floor of an encrypted local write: AES-GCM seal of 64 KiB chunks into
    1 MiB buffers and pwrite, split over threads (each its own part of the file)."""
    unit, chunk = 65536 + 16, 65536
    n = len(payload) // chunk
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)

    def part(lo, hi):
        out = memoryview(bytearray(16 * unit))
        for k in range(lo, hi, 16):
            m = min(16, hi - k)
            for j in range(m):
                aead.encrypt_into(bytes(12), payload[(k + j) * chunk:(k + j + 1) * chunk], None,
                                  out[j * unit:(j + 1) * unit])
            os.pwrite(fd, out[:m * unit], 1024 + k * unit)
    split_over(part, n, threads)
    os.close(fd)


_WHOLE = r"""
import os, sys, time
from fsspec.implementations.local import LocalFileSystem
from integrations.encrypted_fs import EncryptedFileSystem
import kms_core

side, how, path = sys.argv[1:4]
fs = LocalFileSystem()
if side == "encrypted":
    fs = EncryptedFileSystem(fs=fs, kms_client=kms_core.client(), skip_instance_cache=True)
fs.cat_file(path, 0, 10)  # imports done, data key unwrapped and cached


def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024


with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM to the current RSS
before = status("VmRSS")
t0 = time.perf_counter()
if how == "cat_file":
    data = fs.cat_file(path)
else:
    with fs.open(path, "rb") as f:
        data = f.read()
seconds = time.perf_counter() - t0
print(len(data), status("VmHWM") - before, seconds, type(data).__name__)
"""


def whole_file(tmp, kms_home, root_key, mib, repeat, kms):
    """Peak RSS above the baseline and GB/s of one whole-file read, per side and way."""
    from fsspec.implementations.local import LocalFileSystem

    from integrations.encrypted_fs import EncryptedFileSystem
    size = mib * MiB
    block = os.urandom(MiB)
    plain, enc = f"{tmp}/whole-plain", f"{tmp}/whole-enc"
    with open(plain, "wb") as f:
        for _ in range(mib):
            f.write(block)
    efs = EncryptedFileSystem(fs=LocalFileSystem(), kms_client=kms, skip_instance_cache=True)
    with efs.open(enc, "wb") as f:
        for _ in range(mib):
            f.write(block)
    env = dict(os.environ, KMS_HOME=kms_home, KMS_ROOT_KEY=base64.b64encode(root_key).decode())
    res = {}
    for _ in range(repeat):
        for how in ("read", "cat_file"):
            for side, path in (("plain", plain), ("encrypted", enc)):
                out = subprocess.run([sys.executable, "-c", _WHOLE, side, how, path], env=env,
                                     check=True, capture_output=True, text=True).stdout.split()
                assert int(out[0]) == size, out
                res.setdefault((side, how), []).append((int(out[1]), float(out[2]), out[3]))
    os.unlink(plain)
    os.unlink(enc)
    return size, res


def rng(values, fmt="{:.2f}"):
    lo, hi = min(values), max(values)
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else f"{fmt.format(lo)}–{fmt.format(hi)}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--random-file-mib", type=int, default=256)
    ap.add_argument("--whole-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--skip-random", action="store_true")
    ap.add_argument("--skip-whole", action="store_true")
    ap.add_argument("--skip-esdk", action="store_true")
    ap.add_argument("--quick", action="store_true", help="smaller sizes, one repeat (smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.size_mib, args.random_file_mib, args.whole_mib, args.repeat = 16, 16, 32, 1
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[:args.cores]
        os.sched_setaffinity(0, set(cpus))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from fsspec.implementations.local import LocalFileSystem
    from fsspec.implementations.memory import MemoryFileSystem

    import kms_core
    from integrations.encrypted_fs import EncryptedFileSystem, pipeline

    home = tempfile.mkdtemp(prefix="kms-bench-")
    root_key = os.urandom(32)
    kms = kms_core.client(home=home, root_key=root_key)
    size = args.size_mib * MiB
    payload = memoryview(os.urandom(size))
    buf = bytearray(MiB)
    r = args.repeat
    tmp = tempfile.mkdtemp(prefix="fs-bench-", dir=os.environ.get("TMPDIR", "/tmp"))
    rep: list[str] = []

    def line(name, walls, nbytes=size):
        rep.append(f"  {name:58} {rng([gbps(nbytes, w) for w in walls])} GB/s")
        if os.environ.get("FS_BENCH_RAW"):
            rep.append("      " + " ".join(f"{gbps(nbytes, w):.2f}" for w in walls))

    def ratios(name, a, b, target=""):
        """Per-round throughput of side b over side a, as a range."""
        vals = [wa / wb for wa, wb in zip(a, b, strict=True)]  # walls: b's speed over a's
        rep.append(f"  {name:58} {rng(vals)}x {target}")
        return vals

    # ------------------------------------------------------------------ 1. memory
    mem = MemoryFileSystem(global_store=False, skip_instance_cache=True)
    emem = EncryptedFileSystem(fs=mem, kms_client=kms, skip_instance_cache=True)
    root = f"/bench-{uuid.uuid4().hex}"
    emem.pipe_file(f"{root}/warm", b"x")
    stream_write(emem, f"{root}/enc", payload)
    assert stream_read(emem, f"{root}/enc", buf) == size
    assert emem.cat_file(f"{root}/enc", size - 1000) == bytes(payload[size - 1000:])
    mem_pw, mem_ew, mem_ew1 = interleaved(
        [lambda: stream_write(mem, f"{root}/plain", payload),
         lambda: stream_write(emem, f"{root}/enc", payload),
         single(lambda: stream_write(emem, f"{root}/enc1", payload))], r)
    mem_pr, mem_er, mem_er1 = interleaved(
        [lambda: stream_read(mem, f"{root}/plain", buf), lambda: stream_read(emem, f"{root}/enc", buf),
         single(lambda: stream_read(emem, f"{root}/enc1", buf))], r)
    mem.rm(root, recursive=True)

    # ------------------------------------------------------------------ 2. local files
    loc = LocalFileSystem()
    eloc = EncryptedFileSystem(fs=loc, kms_client=kms, skip_instance_cache=True)
    eloc_nosync = EncryptedFileSystem(fs=loc, kms_client=kms, fsync=False, skip_instance_cache=True)
    eloc.pipe_file(f"{tmp}/warm", b"x")

    def unlink(path):
        # ...and write back every dirty page (untimed): each timed write starts from
        # the same page-cache state, not throttled by the previous ones' writeback.
        def run():
            if os.path.exists(path):
                os.unlink(path)
            os.sync()
        return run

    def plain_fsync(path):
        def run():
            with open(path, "wb") as f:
                for i in range(0, size, MiB):
                    f.write(payload[i:i + MiB])
                f.flush()
                os.fsync(f.fileno())
        return run
    names = ["plain", "plain-fsync", "enc", "enc-nosync", "enc1-nosync"]
    w_plain, w_plain_sync, w_enc, w_enc_nosync, w_enc1 = interleaved(
        [lambda: stream_write(loc, f"{tmp}/plain", payload), plain_fsync(f"{tmp}/plain-fsync"),
         lambda: stream_write(eloc, f"{tmp}/enc", payload),
         lambda: stream_write(eloc_nosync, f"{tmp}/enc-nosync", payload),
         single(lambda: stream_write(eloc_nosync, f"{tmp}/enc1-nosync", payload))], r,
        setups=[unlink(f"{tmp}/{n}") for n in names])
    assert eloc.cat_file(f"{tmp}/enc", 5, 99) == bytes(payload[5:99])
    r_plain, r_enc, r_enc1 = interleaved(
        [lambda: stream_read(loc, f"{tmp}/plain", buf), lambda: stream_read(eloc, f"{tmp}/enc", buf),
         single(lambda: stream_read(eloc, f"{tmp}/enc", buf))], r)

    # ------------------------------------------------------------------ 3. floor
    aead = AESGCM(os.urandom(32))
    ct = memoryview(aead.encrypt(bytes(12), bytes(65536), None))
    aes_e1, aes_en, aes_d1, aes_dn = interleaved(
        [lambda: aes_over(aead, payload, 1, False), lambda: aes_over(aead, payload, cores, False),
         lambda: aes_over(aead, payload, 1, True, ct), lambda: aes_over(aead, payload, cores, True, ct)], r)
    # The bare floors, interleaved with the plain and encrypted sides again.
    fw_plain, fw_bare, fw_enc = interleaved(
        [lambda: stream_write(loc, f"{tmp}/plain", payload), lambda: bare_write(f"{tmp}/bare", payload, aead, cores),
         lambda: stream_write(eloc_nosync, f"{tmp}/enc-nosync", payload)], r,
        setups=[unlink(f"{tmp}/plain"), unlink(f"{tmp}/bare"), unlink(f"{tmp}/enc-nosync")])
    encsize = os.path.getsize(f"{tmp}/bare")
    fr_plain, fr_bare, fr_enc = interleaved(
        [lambda: stream_read(loc, f"{tmp}/plain", buf), lambda: bare_read(f"{tmp}/bare", encsize, aead, cores),
         lambda: stream_read(eloc, f"{tmp}/enc", buf)], r)

    if not args.skip_random:
        # -------------------------------------------------------------- 4-6. random reads, KMS, GIL
        big = args.random_file_mib * MiB
        block = os.urandom(MiB)
        eloc4k = EncryptedFileSystem(fs=loc, kms_client=kms, chunk_size=4096, skip_instance_cache=True)
        sides = {"plain": loc, "enc64k": eloc, "enc4k": eloc4k}
        for name, fs_ in sides.items():
            with fs_.open(f"{tmp}/{name}-big", "wb") as f:
                for _ in range(args.random_file_mib):
                    f.write(block)
        rnd = random.Random(1)
        offsets = [rnd.randrange(0, big - 4096) for _ in range(2000)]

        def per_read(fs_, name):
            with fs_.open(f"{tmp}/{name}-big", "rb") as f:
                for off in offsets[:100]:  # warm the page cache and code paths
                    f.seek(off)
                    f.read(4096)
                samples = []
                for off in offsets:
                    t0 = time.perf_counter()
                    f.seek(off)
                    f.read(4096)
                    samples.append(time.perf_counter() - t0)
            return statistics.median(samples)

        def per_cat(fs_, name):
            samples = []
            for off in offsets[:500]:
                t0 = time.perf_counter()
                fs_.cat_file(f"{tmp}/{name}-big", start=off, end=off + 4096)
                samples.append(time.perf_counter() - t0)
            return statistics.median(samples)
        rd = {n: min(x) for n, x in zip(sides, zip(*[[per_read(fs_, n) for n, fs_ in sides.items()]
                                                    for _ in range(args.repeat)], strict=False), strict=False)}
        cat = {n: min(x) for n, x in zip(sides, zip(*[[per_cat(fs_, n) for n, fs_ in sides.items()]
                                                     for _ in range(args.repeat)], strict=False), strict=False)}

        # Where a cold random read's time goes: the chunk(s) read from the page
        # cache (pread at the same random offsets) and authenticated+decrypted.
        def floor(nbytes, chunk_size):
            fd = os.open(f"{tmp}/plain-big", os.O_RDONLY)
            try:
                scratch = bytearray(nbytes)
                samples = []
                for o in offsets[:500]:
                    t0 = time.perf_counter()
                    os.preadv(fd, [scratch], o)
                    samples.append(time.perf_counter() - t0)
            finally:
                os.close(fd)
            ct = aead.encrypt(bytes(12), bytes(chunk_size), None)
            pt = bytearray(chunk_size)
            gcm = []
            for _ in range(500):
                t0 = time.perf_counter()
                aead.decrypt_into(bytes(12), ct, None, pt)
                gcm.append(time.perf_counter() - t0)
            return statistics.median(samples), statistics.median(gcm)
        (io64, gcm64), (io4, gcm4) = floor(65536 + 16, 65536), floor(2 * 4112, 4096)
        with eloc.open(f"{tmp}/enc64k-big", "rb") as f:
            f.seek(big - 4096 - 7)
            assert f.read(4096) == (block * 2)[MiB - 4096 - 7:MiB - 7]

        # ---------------------------------------------------------------- 5. KMS calls
        counting = Counting(kms)
        many = EncryptedFileSystem(fs=MemoryFileSystem(), kms_client=counting, skip_instance_cache=True)
        many.pipe({f"{root}/small/{i}": b"row %d\n" % i for i in range(1000)})
        calls_cached = counting.calls
        nocache = Counting(kms)
        off = EncryptedFileSystem(fs=MemoryFileSystem(), kms_client=nocache, cache=False,
                                  skip_instance_cache=True)
        off.pipe({f"{root}/small2/{i}": b"row %d\n" % i for i in range(1000)})

        # ---------------------------------------------------------------- 6. GIL
        import hashlib

        def stall(fn):
            """(duration of fn on a worker thread, longest gap the main thread saw)."""
            res = {}

            def bg():
                time.sleep(0.01)
                t0 = time.perf_counter()
                fn()
                res["t"] = time.perf_counter() - t0
            th = threading.Thread(target=bg)
            th.start()
            last = time.perf_counter()
            gap = 0.0
            while th.is_alive():
                time.sleep(0.0005)
                now = time.perf_counter()
                gap, last = max(gap, now - last), now
            th.join()
            return res["t"], max(gap, time.perf_counter() - last)
        # One call long enough (128 MiB) that a released GIL lets the main
        # thread run many times.
        gil_in = bytes(128 * MiB)
        gil_ct = bytearray(len(gil_in) + 16)
        g_aes = min((stall(lambda: aead.encrypt_into(b"\0" * 12, gil_in, None, gil_ct))
                     for _ in range(2)), key=lambda x: x[1])
        g_sha = min((stall(lambda: hashlib.sha256(gil_in).digest()) for _ in range(2)),
                    key=lambda x: x[1])
        del gil_in, gil_ct



    # ------------------------------------------------------------------ 7. whole-file reads
    whole = None if args.skip_whole else whole_file(tmp, home, root_key, args.whole_mib, r, kms)

    sdk_w = sdk_r = None
    esize = min(size, 64 * MiB)
    if not args.skip_esdk:
        # ------------------------------------------------------------------ ESDK (64 MiB at most)
        import aws_encryption_sdk
        from aws_encryption_sdk.identifiers import CommitmentPolicy, EncryptionKeyType, WrappingAlgorithm
        from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
        from aws_encryption_sdk.key_providers.raw import RawMasterKeyProvider

        class StaticKeys(RawMasterKeyProvider):
            provider_id = "bench"

            def _get_raw_key(self, key_id):
                return WrappingKey(wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
                                   wrapping_key=b"\x07" * 32, wrapping_key_type=EncryptionKeyType.SYMMETRIC)

        mkp = StaticKeys()
        mkp.add_master_key(b"k1")
        client = aws_encryption_sdk.EncryptionSDKClient(
            commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
        data = bytes(payload[:esize])
        holder = {}
        (sdk_w,) = interleaved([lambda: holder.__setitem__(
            "ct", client.encrypt(source=data, key_provider=mkp)[0])], max(1, r - 1))
        (sdk_r,) = interleaved([lambda: client.decrypt(source=holder["ct"], key_provider=mkp)], max(1, r - 1))

    # ------------------------------------------------------------------ report
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    print(f"fs_throughput: {args.size_mib} MiB payload, {r} interleaved rounds (ranges over rounds), "
          f"{cores} cores, {pipeline.workers()} worker threads, Python {sys.version.split()[0]}, "
          f"load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print("1. memory:// (1 MiB writes / readinto)")
    line("plain memory:// write", mem_pw)
    line("encrypted::memory:// write", mem_ew)
    line("encrypted::memory:// write, one thread", mem_ew1)
    ratios("encrypted / plain memory:// write", mem_pw, mem_ew, "(target >= 0.9x)")
    line("plain memory:// read", mem_pr)
    line("encrypted::memory:// read", mem_er)
    line("encrypted::memory:// read, one thread", mem_er1)
    if sdk_w and sdk_r:
        line("aws-encryption-sdk encrypt (64 MiB)", sdk_w, esize)
        line("aws-encryption-sdk decrypt (64 MiB)", sdk_r, esize)
    print("\n".join(rep))
    rep.clear()
    print("2. local files (new files, 1 MiB writes / readinto)")
    line("plain write", w_plain)
    line("plain write + fsync", w_plain_sync)
    line("encrypted write (fsync file + directory: the default)", w_enc)
    line("encrypted write, fsync=False", w_enc_nosync)
    line("encrypted write, fsync=False, one thread", w_enc1)
    ratios("encrypted (fsync=False) / plain write", w_plain, w_enc_nosync, "(target >= 0.8x)")
    ratios("encrypted (fsync=False, one thread) / plain write", w_plain, w_enc1)
    ratios("encrypted (fsync) / plain write + fsync", w_plain_sync, w_enc)
    ratios("encrypted (fsync) / plain write (the cost of fsync included)", w_plain, w_enc)
    line("plain read", r_plain)
    line("encrypted read", r_enc)
    line("encrypted read, one thread", r_enc1)
    ratios("encrypted / plain read", r_plain, r_enc, "(target >= 0.9x)")
    ratios("encrypted (one thread) / plain read", r_plain, r_enc1)
    print("\n".join(rep))
    rep.clear()
    print(f"3. floor: AES-GCM alone, 64 KiB chunks, no I/O; plain I/O + AES-GCM shared by {cores} cores")
    line("AES-GCM encrypt, one thread", aes_e1)
    line(f"AES-GCM encrypt, {cores} threads", aes_en)
    line("AES-GCM decrypt, one thread", aes_d1)
    line(f"AES-GCM decrypt, {cores} threads", aes_dn)
    # The most the cores allow: the plain transfer's work plus AES-GCM's, spread
    # perfectly over the cores (and never faster than the plain transfer itself);
    # the measured floors below show what shared memory bandwidth leaves of it.
    def fl(plain, aes):
        return [p / max(p, (p + a) / cores) for p, a in zip(plain, aes, strict=True)]
    rep.append(f"  {'floor: encrypted/plain local read':58} {rng(fl(r_plain, aes_d1))}x")
    rep.append(f"  {'floor: encrypted/plain local write':58} {rng(fl(w_plain, aes_e1))}x")
    # memory:// can't overlap: its write is a BytesIO copy that holds the GIL, and
    # sealing needs the GIL between chunks, so the two run one after the other.
    serial = [p / (p + a) for p, a in zip(mem_pw, aes_e1, strict=True)]
    rep.append(f"  {'floor: encrypted/plain memory:// write (serial: GIL)':58} {rng(serial)}x")
    rep.append(f"  measured floors, {cores} threads, no fsspec (rounds interleaved with plain and encrypted):")
    line("bare pread + AES-GCM open (local read)", fr_bare, encsize)
    ratios("bare / plain local read", fr_plain, fr_bare)
    ratios("encrypted / plain local read (same rounds)", fr_plain, fr_enc, "(target >= 0.9x)")
    line("bare AES-GCM seal + pwrite (local write)", fw_bare)
    ratios("bare / plain local write", fw_plain, fw_bare)
    ratios("encrypted (fsync=False) / plain write (same rounds)", fw_plain, fw_enc, "(target >= 0.8x)")
    print("\n".join(rep))
    rep.clear()
    if not args.skip_random:
        print("4. random 4 KiB reads (median per read, best round; no thread hand-off)")
        print(f"  seek+read on an open handle: plain {rd['plain'] * 1e6:5.1f} us, encrypted "
              f"{rd['enc64k'] * 1e6:5.1f} us = {rd['enc64k'] / rd['plain']:4.2f}x; chunk_size=4096: "
              f"{rd['enc4k'] * 1e6:5.1f} us = {rd['enc4k'] / rd['plain']:4.2f}x")
        print(f"  floor per cold read: pread {io64 * 1e6:4.1f} us + AES-GCM {gcm64 * 1e6:4.1f} us = "
              f"{(io64 + gcm64) / rd['plain']:4.2f}x plain (one 64 KiB chunk); pread {io4 * 1e6:4.1f} us"
              f" + 2 x AES-GCM {gcm4 * 1e6:4.1f} us = {(io4 + 2 * gcm4) / rd['plain']:4.2f}x (4 KiB chunks)")
        print(f"  cat_file (open+read+close): plain {cat['plain'] * 1e6:5.1f} us, encrypted "
              f"{cat['enc64k'] * 1e6:5.1f} us = {cat['enc64k'] / cat['plain']:4.2f}x; chunk_size=4096: "
              f"{cat['enc4k'] * 1e6:5.1f} us = {cat['enc4k'] / cat['plain']:4.2f}x")
        print(f"5. KMS calls for 1,000 small files: {calls_cached} with the cache, {nocache.calls} without")
        def verdict(t, gap):
            return "holds the GIL" if gap > 0.5 * t else "releases the GIL"
        print(f"6. GIL: AESGCM.encrypt_into of 128 MiB took {g_aes[0] * 1e3:.0f} ms, stalled another "
              f"thread {g_aes[1] * 1e3:.1f} ms: {verdict(*g_aes)}; hashlib.sha256 {g_sha[0] * 1e3:.0f} ms, "
              f"stall {g_sha[1] * 1e3:.1f} ms: {verdict(*g_sha)}")
    if whole:
        wsize, res = whole
        print(f"7. whole-file read of {wsize // MiB} MiB, each in a fresh process: peak RSS above "
              f"the baseline (x file size) and GB/s")
        for how in ("read", "cat_file"):
            for side in ("plain", "encrypted"):
                rows = res[(side, how)]
                print(f"  {side:9} {how + '()' if how == 'read' else how:9} peak "
                      f"{rng([m / MiB for m, _, _ in rows], '{:.0f}')} MiB = "
                      f"{rng([m / wsize for m, _, _ in rows])}x   {rng([gbps(wsize, s) for _, s, _ in rows])} GB/s"
                      f"   returns {rows[0][2]}")
            p_t = [s for _, s, _ in res[("plain", how)]]
            e_t = [s for _, s, _ in res[("encrypted", how)]]
            print(f"  encrypted/plain {how} throughput {rng([p / e for p, e in zip(p_t, e_t, strict=True)])}x "
                  f"(target >= 0.8x; peak target <= 1.1x the file)")
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
