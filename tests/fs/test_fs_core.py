"""EncryptedFileSystem over memory and local files with the embedded KMS engine."""
from __future__ import annotations

import os
import pathlib
import pickle
import uuid

import fsspec
import pytest
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrations.encrypted_fs import (
    PATH_CONTEXT_KEY,
    ChunkAuthenticationError,
    DataKeyError,
    EncryptedFileError,
    EncryptedFileSystem,
    EncryptionContextMismatchError,
    LayoutError,
    NotEncryptedError,
    TrailingDataError,
    TruncatedFileError,
    files,
    writer,
)
from integrations.encrypted_fs import format as F

C = F.DEFAULT_CHUNK_SIZE
U = C + F.TAG_SIZE
H = F.DEFAULT_HEADER_SIZE


def new_mem(kms, **kw) -> EncryptedFileSystem:
    return EncryptedFileSystem(fs=MemoryFileSystem(), kms_client=kms, skip_instance_cache=True, **kw)


def p(efs, name: str) -> str:
    return f"{efs.root}/{name}"


# ------------------------------------------------------------------ tamper matrix

def _three_chunks(efs, name="f"):
    data = os.urandom(2 * C + 1000)
    path = p(efs, name)
    efs.pipe_file(path, data)
    return path, data, efs.fs.cat_file(path)


def _chunks(raw):
    body = raw[H:]
    return raw[:H], [body[i:i + U] for i in range(0, len(body), U)]


def _read_all_ways(efs, path):
    """Every way to get at the plaintext must fail the same way."""
    with pytest.raises(EncryptedFileError) as first:
        efs.cat_file(path)
    with pytest.raises(type(first.value)), efs.open(path, "rb") as f:
        while f.read(10_000):
            pass
    return first.value


TAMPERS = {
    "reorder": (lambda h, c: h + c[1] + c[0] + c[2], ChunkAuthenticationError),
    "drop-middle": (lambda h, c: h + c[0] + c[2], ChunkAuthenticationError),
    "duplicate": (lambda h, c: h + c[0] + c[0] + c[1] + c[2], ChunkAuthenticationError),
    "truncate-at-chunk-boundary": (lambda h, c: h + c[0] + c[1], TruncatedFileError),
    "truncate-at-boundary-plus-one": (lambda h, c: h + c[0] + c[1] + c[2][:1], TruncatedFileError),
    "truncate-mid-chunk": (lambda h, c: h + c[0] + c[1] + c[2][:500], ChunkAuthenticationError),
    "truncate-to-header": (lambda h, c: h, TruncatedFileError),
    "extend-with-chunk": (lambda h, c: h + c[0] + c[1] + c[2] + c[0], ChunkAuthenticationError),
    "extend-with-bytes": (lambda h, c: h + c[0] + c[1] + c[2] + b"\0" * 100, EncryptedFileError),
    "flip-chunk-bit": (lambda h, c: h + c[0] + bytes([c[1][0] ^ 1]) + c[1][1:] + c[2],
                       ChunkAuthenticationError),
    "flip-tag-bit": (lambda h, c: h + c[0][:-1] + bytes([c[0][-1] ^ 0x80]) + c[1] + c[2],
                     ChunkAuthenticationError),
}


@pytest.mark.parametrize("which", ["mem_efs", "local_efs"])  # views of memory; pread of files
@pytest.mark.parametrize("case", sorted(TAMPERS))
def test_tamper_matrix(which, case, request):
    efs = request.getfixturevalue(which)
    path, data, raw = _three_chunks(efs)
    make, expected = TAMPERS[case]
    efs.fs.pipe_file(path, make(*_chunks(raw)))
    err = _read_all_ways(efs, path)
    assert isinstance(err, expected), repr(err)
    assert data[:32].hex() not in str(err)


@pytest.mark.parametrize("which", ["mem_efs", "local_efs"])
def test_small_read_across_a_boundary_names_the_tampered_chunk(which, request):
    """A small read across chunks 0|1 decrypts both from one request; a flipped
    bit in either is reported as that chunk's failure."""
    efs = request.getfixturevalue(which)
    path, _data, raw = _three_chunks(efs)
    for index in (0, 1):
        at = H + index * U + 5
        efs.fs.pipe_file(path, raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1:])
        with efs.open(path, "rb") as f:
            f.seek(C - 10)
            with pytest.raises(ChunkAuthenticationError, match=f"chunk {index} failed"):
                f.read(20)


def test_extending_a_whole_chunk_file_is_trailing_data(mem_efs):
    path = p(mem_efs, "full")
    mem_efs.pipe_file(path, os.urandom(2 * C))
    h, c = _chunks(mem_efs.fs.cat_file(path))
    mem_efs.fs.pipe_file(path, h + c[0] + c[1] + c[0])
    assert isinstance(_read_all_ways(mem_efs, path), TrailingDataError)


def test_splicing_chunks_between_files_fails(mem_efs):
    # Same cached data key for both files; the per-file salt still separates them.
    a, _, raw_a = _three_chunks(mem_efs, "a")
    _b, _, raw_b = _three_chunks(mem_efs, "b")
    ha, ca = _chunks(raw_a)
    _hb, cb = _chunks(raw_b)
    mem_efs.fs.pipe_file(a, ha + ca[0] + cb[1] + ca[2])
    assert isinstance(_read_all_ways(mem_efs, a), ChunkAuthenticationError)


def test_splicing_headers_between_files_fails(mem_efs):
    a, _, raw_a = _three_chunks(mem_efs, "a")
    _b, _, raw_b = _three_chunks(mem_efs, "b")
    mem_efs.fs.pipe_file(a, _chunks(raw_b)[0] + b"".join(_chunks(raw_a)[1]))
    assert isinstance(_read_all_ways(mem_efs, a), ChunkAuthenticationError)


def test_wrong_encryption_context_fails(shared_kms):
    writer = new_mem(shared_kms, encryption_context={"dept": "finance"})
    reader = new_mem(shared_kms, encryption_context={"dept": "hr"})
    path = f"/ctx-{uuid.uuid4().hex}/f"
    writer.pipe_file(path, b"payroll")
    with pytest.raises(EncryptionContextMismatchError):
        reader.cat_file(path)
    assert writer.cat_file(path) == b"payroll"
    # A reader that requires nothing still gets the context from the header.
    assert new_mem(shared_kms).cat_file(path) == b"payroll"


def test_tampered_context_or_wrapped_key_fails_in_kms(mem_efs):
    mem_efs.encryption_context = {"dept": "finance"}
    path = p(mem_efs, "f")
    mem_efs.pipe_file(path, b"secret")
    raw = mem_efs.fs.cat_file(path)
    i = raw.index(b"finance")
    mem_efs.encryption_context = {}
    mem_efs.keys.clear()
    mem_efs.fs.pipe_file(path, raw[:i] + b"f1nance" + raw[i + 7:])
    with pytest.raises(DataKeyError) as e:
        mem_efs.cat_file(path)
    assert e.value.code == "InvalidCiphertextException"
    header = F.Header.parse(raw)
    j = raw.index(header.wrapped_key)
    mem_efs.fs.pipe_file(path, raw[:j + 10] + bytes([raw[j + 10] ^ 1]) + raw[j + 11:])
    with pytest.raises(DataKeyError):
        mem_efs.cat_file(path)


def test_plaintext_object_is_a_clear_error_then_opt_in(mem_efs, shared_kms):
    path = p(mem_efs, "plain.csv")
    mem_efs.fs.pipe_file(path, b"a,b\n1,2\n")
    with pytest.raises(NotEncryptedError, match="not an encrypted file"):
        mem_efs.cat_file(path)
    passthrough = EncryptedFileSystem(fs=mem_efs.fs, kms_client=shared_kms, allow_plaintext=True,
                                      skip_instance_cache=True)
    assert passthrough.cat_file(path) == b"a,b\n1,2\n"
    assert passthrough.info(path)["size"] == 8
    mem_efs.pipe_file(p(mem_efs, "enc"), b"xyz")
    assert passthrough.cat_file(p(mem_efs, "enc")) == b"xyz"
    sizes = {e["name"].rsplit("/", 1)[1]: e["size"] for e in passthrough.ls(mem_efs.root)}
    assert sizes == {"plain.csv": 8, "enc": 3}


# ------------------------------------------------------------------ random access

RA_SIZES = (0, 1, 4095, 4096, 4097, 3 * 4096, 50_000, 300_000)


@pytest.fixture(scope="module")
def ra_files(tmp_path_factory, shared_kms):
    """The same files, 4 KiB chunks, on local files (pread) and in memory (views)."""
    root = tmp_path_factory.mktemp("ra")
    systems = {"local": EncryptedFileSystem(fs=LocalFileSystem(), kms_client=shared_kms,
                                            chunk_size=4096, skip_instance_cache=True),
               "mem": new_mem(shared_kms, chunk_size=4096)}
    files = {}
    rnd = __import__("random").Random(7)
    for size in RA_SIZES:
        data = rnd.randbytes(size)
        path = f"{root}/f{size}"
        for efs in systems.values():
            efs.pipe_file(path, data)
        files[size] = (path, data)
    yield systems, files
    systems["mem"].fs.rm(str(root), recursive=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(["local", "mem"]), which=st.sampled_from(RA_SIZES),
       ops=st.lists(st.tuples(st.integers(-310_000, 310_000), st.integers(0, 40_000)),
                    min_size=1, max_size=6))
def test_random_access_matches_reference(ra_files, where, which, ops):
    systems, files = ra_files
    efs = systems[where]
    path, data = files[which]
    with efs.open(path, "rb") as f:
        assert f.size == len(data)
        for start, length in ops:
            pos = f.seek(start, 0 if start >= 0 else 2) if start >= -len(data) else f.seek(0)
            assert f.read(length) == data[pos:pos + length]
            buf = bytearray(length)
            f.seek(pos)
            n = f.readinto(buf)
            assert bytes(buf[:n]) == data[pos:pos + length]
    for start, length in ops:
        end = start + length
        assert efs.cat_file(path, start, end) == data[start:end] if start >= 0 or end < 0 \
            else True


def test_ranged_reads_fetch_only_touched_chunks(ra_files, monkeypatch):
    efs, files = ra_files[0]["local"], ra_files[1]
    path, data = files[50_000]
    with efs.open(path, "rb") as f:
        seen = []
        real = f._src.read
        monkeypatch.setattr(f._src, "read", lambda a, b, s=None: seen.append((a, b)) or real(a, b, s))
        f.seek(4096 * 5 + 10)
        assert f.read(100) == data[4096 * 5 + 10:4096 * 5 + 110]
        f.seek(4096 * 7 - 5)
        assert f.read(10) == data[4096 * 7 - 5:4096 * 7 + 5]
        unit = 4096 + 16
        # A read across a chunk boundary fetches both chunks in one request.
        assert seen == [(1024 + 5 * unit, 1024 + 6 * unit), (1024 + 6 * unit, 1024 + 8 * unit)]
        # The two most recent chunks are cached: reads within them fetch nothing.
        seen.clear()
        for off in (4096 * 7 + 1, 4096 * 6, 4096 * 8 - 100, 4096 * 6 + 4000):
            f.seek(off)
            assert f.read(100) == data[off:off + 100]
        assert seen == []
        f.seek(4096 * 5)  # evicted by chunks 6 and 7
        assert f.read(10) == data[4096 * 5:4096 * 5 + 10]
        assert seen == [(1024 + 5 * unit, 1024 + 6 * unit)]
        # Chunks 9 then 8 loaded one at a time sit out of order in the cache;
        # a read across 8|9 still fetches nothing.
        seen.clear()
        for off in (4096 * 9, 4096 * 8, 4096 * 9 - 50):
            f.seek(off)
            assert f.read(100) == data[off:off + 100]
        assert seen == [(1024 + 9 * unit, 1024 + 10 * unit), (1024 + 8 * unit, 1024 + 9 * unit)]


@pytest.mark.parametrize("where", ["local", "mem"])
def test_bulk_reads_of_local_files_come_in_pieces(ra_files, where, monkeypatch):
    """readinto and large reads decrypt straight into the result; local
    ciphertext is fetched in pieces of about 256 KiB, memory is sliced in one go."""
    efs, (path, data) = ra_files[0][where], ra_files[1][300_000]
    unit = 4096 + 16
    with efs.open(path, "rb") as f:
        seen = []
        real = f._src.read
        monkeypatch.setattr(f._src, "read", lambda a, b, s=None: seen.append((a, b)) or real(a, b, s))
        f.seek(100)
        buf = bytearray(len(data))
        assert f.readinto(buf) == len(data) - 100 and bytes(buf[:len(data) - 100]) == data[100:]
        f.seek(7)
        assert f.read(280_000) == data[7:280_007]
    bulk = [b - a for a, b in seen if b - a > 2 * unit]
    piece = files._LOCAL_PIECE // 4096 * unit
    if where == "local":
        assert len(bulk) >= 2 * (300_000 // files._LOCAL_PIECE) and max(bulk) <= piece
    else:
        assert len(bulk) == 2 and min(bulk) > piece


# ------------------------------------------------------------------ sizes and listing

class CountingMemory(MemoryFileSystem):
    """A real memory filesystem that counts data reads."""
    reads = 0

    def _open(self, path, mode="rb", **kw):
        if "r" in mode:
            type(self).reads += 1
        return super()._open(path, mode, **kw)

    def cat_file(self, path, start=None, end=None, **kw):
        type(self).reads += 1
        return super().cat_file(path, start, end, **kw)


def test_sizes_need_no_reads_for_default_layout(shared_kms):
    inner = CountingMemory()
    efs = EncryptedFileSystem(fs=inner, kms_client=shared_kms, skip_instance_cache=True)
    root = f"/sz-{uuid.uuid4().hex}"
    sizes = {"a": 0, "b": 1, "c": C, "d": C + 1, "e": 300_000}
    for name, n in sizes.items():
        efs.pipe_file(f"{root}/{name}", os.urandom(n))
    CountingMemory.reads = 0
    assert {e["name"].rsplit("/", 1)[1]: e["size"] for e in efs.ls(root)} == sizes
    assert efs.info(f"{root}/e")["size"] == 300_000
    assert efs.size(f"{root}/d") == C + 1
    assert efs.du(root) == sum(sizes.values())
    assert {k.rsplit("/", 1)[1]: v["size"] for k, v in efs.find(root, detail=True).items()} == sizes
    assert CountingMemory.reads == 0


def test_non_default_layout_sizes_take_one_small_read(shared_kms):
    inner = CountingMemory()
    efs = EncryptedFileSystem(fs=inner, kms_client=shared_kms, chunk_size=4096,
                              skip_instance_cache=True)
    root = f"/sz-{uuid.uuid4().hex}"
    efs.pipe_file(f"{root}/x", os.urandom(10_000))
    efs.pipe_file(f"{root}/y", b"")
    CountingMemory.reads = 0
    assert {e["name"].rsplit("/", 1)[1]: e["size"] for e in efs.ls(root)} == {"x": 10_000, "y": 0}
    assert CountingMemory.reads == 2
    # a default-configured reader sees the same sizes and reads the file
    other = EncryptedFileSystem(fs=inner, kms_client=shared_kms, skip_instance_cache=True)
    assert other.cat_file(f"{root}/x") == efs.cat_file(f"{root}/x")


def test_large_context_spills_the_header_and_still_reads(mem_efs):
    mem_efs.encryption_context = {"note": "n" * 3000}
    path = p(mem_efs, "big-ctx")
    data = os.urandom(70_000)
    mem_efs.pipe_file(path, data)
    raw = mem_efs.fs.cat_file(path)
    assert F.Header.parse(raw).header_size == 4096
    assert mem_efs.info(path)["size"] == 70_000
    assert mem_efs.cat_file(path) == data
    assert mem_efs.cat_file(path, -5) == data[-5:]


def test_trailer_padding_is_checked(mem_efs):
    mem_efs.chunk_size = 4096
    path = p(mem_efs, "t")
    mem_efs.pipe_file(path, b"abc")
    raw = bytearray(mem_efs.fs.cat_file(path))
    raw[-20] = 1
    mem_efs.fs.pipe_file(path, bytes(raw))
    with pytest.raises(LayoutError):
        mem_efs.cat_file(path)


# ------------------------------------------------------------------ writing

def test_stored_bytes_are_ciphertext_and_put_get_transform(local_efs, tmp_path):
    secret = b"credit card 4111 1111 1111 1111\n" * 1000
    src = tmp_path / "src.txt"
    src.write_bytes(secret)
    remote = f"{local_efs.root}/remote/src.txt"
    local_efs.put(str(src), remote)
    raw = local_efs.fs.cat_file(remote)
    assert raw[:4] == b"KFSE" and b"credit card" not in raw
    out = tmp_path / "back.txt"
    local_efs.get(remote, str(out))
    assert out.read_bytes() == secret
    local_efs.cp_file(remote, remote + ".copy")
    assert local_efs.cat(remote + ".copy") == secret
    local_efs.mv(remote + ".copy", remote + ".moved")
    assert local_efs.cat(remote + ".moved") == secret and not local_efs.exists(remote + ".copy")


def test_exception_in_with_block_keeps_the_old_object(mem_efs, local_efs):
    for efs in (mem_efs, local_efs):
        path = p(efs, "keep")
        efs.pipe_file(path, b"old")
        with pytest.raises(RuntimeError), efs.open(path, "wb") as f:
            f.write(os.urandom(3 * C))
            raise RuntimeError("boom")
        assert efs.cat_file(path) == b"old"
        assert [e.rsplit("/", 1)[1] for e in efs.ls(efs.root, detail=False)] == ["keep"]


def test_abandoned_writer_never_becomes_valid(local_efs):
    path = p(local_efs, "abandoned")
    f = local_efs.open(path, "wb")
    f.write(os.urandom(2 * C))
    tmp = f._target
    assert os.path.exists(tmp) and not os.path.exists(path)
    # A writer killed here leaves only a hidden temporary without a final chunk,
    # whether nothing but the header reached it yet, or some batches did.
    raws = [pathlib.Path(tmp).read_bytes()]
    f.write(os.urandom(3 * writer._BATCH))  # full batches reach the target
    raws.append(pathlib.Path(tmp).read_bytes())
    assert len(raws[0]) < len(raws[1])
    # (the first may be empty: the header can still sit in the target's buffer)
    for raw, error in zip(raws, (EncryptedFileError, TruncatedFileError), strict=False):
        local_efs.fs.pipe_file(path, raw)
        with pytest.raises(error):
            local_efs.cat_file(path)
    del f
    assert not os.path.exists(tmp)


def test_exclusive_create_and_unsupported_modes(mem_efs):
    path = p(mem_efs, "x")
    with mem_efs.open(path, "xb") as f:
        f.write(b"1")
    with pytest.raises(FileExistsError):
        mem_efs.open(path, "xb")
    with pytest.raises(FileExistsError):
        mem_efs.pipe_file(path, b"2", mode="create")
    with pytest.raises(NotImplementedError, match="not supported on encrypted files"):
        mem_efs.open(path, "ab")
    assert mem_efs.cat_file(path) == b"1"


def test_text_mode_and_streaming_writes(mem_efs):
    path = p(mem_efs, "t.txt")
    with mem_efs.open(path, "w", encoding="utf-8") as f:
        for i in range(20_000):
            f.write(f"line {i} ünïcode\n")
    with mem_efs.open(path, "r", encoding="utf-8") as f:
        lines = f.readlines()
    assert len(lines) == 20_000 and lines[-1] == "line 19999 ünïcode\n"


@pytest.mark.parametrize("pieces", [[1] * 10, [C - 1, 1, 1], [C, C], [3 * C + 5], [C + 1, C - 1, 0, 7]])
def test_write_boundaries(mem_efs, pieces):
    path = p(mem_efs, "w")
    data = os.urandom(sum(pieces))
    with mem_efs.open(path, "wb") as f:
        pos = 0
        for n in pieces:
            f.write(data[pos:pos + n])
            pos += n
    assert mem_efs.cat_file(path) == data
    assert mem_efs.size(path) == len(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(["mem_efs", "local_efs"]), chunk_size=st.sampled_from([4096, 8192, C]),
       pieces=st.lists(st.one_of(st.integers(0, 9000), st.sampled_from([4096, 8192, C, 3 * C + 1]),
                                 st.integers(0, 4 * C)), max_size=8))
def test_streamed_writes_are_the_canonical_encoding(request, where, chunk_size, pieces):
    """Whatever the write sizes, the object is byte for byte what the format
    defines for that data key and salt (whole chunks are sealed straight from
    the caller's buffer, the rest staged), and the writer keeps no reference to
    the caller's buffer: it is overwritten after every write."""
    base = request.getfixturevalue(where)
    efs = EncryptedFileSystem(fs=base.fs, kms_client=base.keys.client, chunk_size=chunk_size,
                              skip_instance_cache=True)
    data = __import__("random").Random(len(pieces)).randbytes(sum(pieces))
    path = p(base, f"w{chunk_size}")
    buf = bytearray(max(pieces, default=0))
    with efs.open(path, "wb") as f:
        pos = 0
        for n in pieces:
            buf[:n] = data[pos:pos + n]
            assert f.write(memoryview(buf)[:n]) == n
            buf[:n] = bytes(n)
            pos += n
    raw = efs.fs.cat_file(path)
    header = F.Header.parse(raw)
    key = efs.keys.unwrap(header.key_id, header.wrapped_key, header.context)
    assert raw == F.encrypt_bytes(data, key, header.wrapped_key, header.key_id, header.context,
                                  chunk_size, header.salt)
    assert efs.cat_file(path) == data


# ------------------------------------------------------------------ path binding

def test_bind_path_copies_by_reencryption(shared_kms):
    efs = new_mem(shared_kms, bind_path=True)
    root = f"/bind-{uuid.uuid4().hex}"
    efs.pipe_file(f"{root}/a", b"bound")
    header = F.Header.parse(efs.fs.cat_file(f"{root}/a"))
    assert header.context == {PATH_CONTEXT_KEY: f"{root}/a"}
    efs.cp_file(f"{root}/a", f"{root}/b")
    efs.mv(f"{root}/b", f"{root}/c")
    assert efs.cat_file(f"{root}/c") == b"bound"
    efs.fs.cp_file(f"{root}/a", f"{root}/raw-copy")  # behind the filesystem's back
    with pytest.raises(EncryptionContextMismatchError):
        efs.cat_file(f"{root}/raw-copy")


# ------------------------------------------------------------------ KMS, keys, caching

def test_managed_keys_are_created_on_first_use(kms, tmp_path):
    for inner, alias in ((MemoryFileSystem(), "alias/aws/s3"),
                         (LocalFileSystem(), "alias/aws/elasticfilesystem")):
        efs = EncryptedFileSystem(fs=inner, kms_client=kms, skip_instance_cache=True)
        path = f"{tmp_path}/m-{alias.rsplit('/', 1)[1]}"
        efs.pipe_file(path, b"managed")
        key = kms.describe_key(KeyId=alias)["KeyMetadata"]
        assert key["KeyManager"] == "AWS"
        assert F.Header.parse(inner.cat_file(path)).key_id == key["Arn"]
        assert efs.cat_file(path) == b"managed"


def test_customer_key_and_rewrapped_reads(kms):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/fs-test", TargetKeyId=key)
    efs = new_mem(kms, key_id="alias/fs-test")
    path = f"/ck-{uuid.uuid4().hex}"
    efs.pipe_file(path, b"customer")
    assert key in F.Header.parse(efs.fs.cat_file(path)).key_id
    kms.disable_key(KeyId=key)
    fresh = new_mem(kms)
    with pytest.raises(DataKeyError) as e:
        fresh.cat_file(path)
    assert e.value.code == "DisabledException"


def test_cache_keeps_kms_calls_low(shared_kms, counting_kms):
    counting = counting_kms(shared_kms)
    efs = new_mem(counting)
    root = f"/many-{uuid.uuid4().hex}"
    efs.pipe({f"{root}/{i}": b"small %d" % i for i in range(1000)})
    assert counting.calls.count("generate_data_key") <= 10
    reader = new_mem(counting)
    assert all(reader.cat_file(f"{root}/{i}") == b"small %d" % i for i in range(0, 1000, 7))
    assert counting.calls.count("decrypt") <= 10
    assert len(counting.calls) <= 20


def test_cache_bounds_and_cache_off(shared_kms, counting_kms):
    counting = counting_kms(shared_kms)
    efs = new_mem(counting, cache_max_files=10)
    root = f"/bounded-{uuid.uuid4().hex}"
    efs.pipe({f"{root}/{i}": b"x" for i in range(50)})
    assert counting.calls.count("generate_data_key") == 5
    counting.calls.clear()
    off = new_mem(counting, cache=False)
    off.pipe({f"{root}/{i}": b"x" for i in range(20)})
    assert counting.calls.count("generate_data_key") == 20


def test_pickles_and_works_after_unpickling(kms_home, tmp_path):
    import base64
    opts = {"home": str(kms_home), "root_key": base64.b64decode(os.environ["KMS_ROOT_KEY"])}
    efs = EncryptedFileSystem(target_protocol="file", kms_options=opts, key_id="alias/aws/s3",
                              encryption_context={"team": "data"}, chunk_size=8192,
                              skip_instance_cache=True)
    efs.pipe_file(f"{tmp_path}/p", b"pickled")
    clone = pickle.loads(pickle.dumps(efs))
    assert clone is not efs and clone.encryption_context == {"team": "data"}
    assert clone.chunk_size == 8192 and clone.cat_file(f"{tmp_path}/p") == b"pickled"
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(new_mem(object()))


def test_url_chaining_and_construction(shared_kms, tmp_path, monkeypatch):
    url = f"encrypted::file://{tmp_path}/chained.bin"
    with fsspec.open(url, "wb", encrypted={"kms_client": shared_kms}) as f:
        f.write(b"chained")
    assert pathlib.Path(f"{tmp_path}/chained.bin").read_bytes()[:4] == b"KFSE"
    fs, path = fsspec.core.url_to_fs(url, encrypted={"kms_client": shared_kms})
    assert isinstance(fs, EncryptedFileSystem) and path == f"{tmp_path}/chained.bin"
    assert fs.cat_file(path) == b"chained"
    assert fs.unstrip_protocol(path) == f"encrypted::file://{tmp_path}/chained.bin"
    fs2 = fsspec.filesystem("encrypted", target_protocol="memory", target_options={},
                            kms_client=shared_kms, skip_instance_cache=True)
    assert isinstance(fs2.fs, MemoryFileSystem)
    # What FSSPEC_ENCRYPTED_KEY_ID / FSSPEC_ENCRYPTED_BIND_PATH become at fsspec import:
    monkeypatch.setitem(fsspec.config.conf, "encrypted",
                        {"key_id": "alias/from-env", "bind_path": "true"})
    fs3 = fsspec.filesystem("encrypted", target_protocol="memory", kms_client=shared_kms,
                            skip_instance_cache=True)
    assert fs3.key_id == "alias/from-env" and fs3.bind_path is True
    with pytest.raises(ValueError, match="chunk_size"):
        EncryptedFileSystem(fs=MemoryFileSystem(), chunk_size=1000, skip_instance_cache=True)
    with pytest.raises(ValueError, match="twice"):
        EncryptedFileSystem(fs=fs2, skip_instance_cache=True)


@pytest.mark.parametrize("which", ["mem_efs", "local_efs"])
def test_every_listing_and_bulk_operation(which, request):
    efs = request.getfixturevalue(which)
    r = efs.root
    efs.makedirs(f"{r}/a/b", exist_ok=True)
    efs.mkdir(f"{r}/c")
    files = {f"{r}/a/one.txt": b"1" * 10, f"{r}/a/b/two.txt": b"2" * 70_000, f"{r}/c/three.bin": b""}
    efs.pipe(files)
    assert efs.cat([f"{r}/a/one.txt", f"{r}/c/three.bin"]) == {
        f"{r}/a/one.txt": b"1" * 10, f"{r}/c/three.bin": b""}
    assert sorted(efs.glob(f"{r}/**/*.txt")) == sorted([f"{r}/a/one.txt", f"{r}/a/b/two.txt"])
    walked = {root: sorted(fs_) for root, _, fs_ in efs.walk(r)}
    assert walked[f"{r}/a/b"] == ["two.txt"]
    assert efs.du(r) == 70_010
    assert efs.sizes(list(files)) == [10, 70_000, 0]
    assert efs.cat_ranges([f"{r}/a/b/two.txt", f"{r}/a/one.txt"], [65_530, 2], [65_540, -2]) == \
        [b"2" * 10, b"1" * 6]
    assert efs.head(f"{r}/a/b/two.txt", 3) == b"222" and efs.tail(f"{r}/a/one.txt", 2) == b"11"
    assert efs.isdir(f"{r}/a") and efs.isfile(f"{r}/a/one.txt") and efs.exists(f"{r}/c")
    assert efs.checksum(f"{r}/a/one.txt") != efs.checksum(f"{r}/a/b/two.txt")
    efs.touch(f"{r}/c/touched")
    assert efs.cat_file(f"{r}/c/touched") == b""
    efs.copy(f"{r}/a", f"{r}/copy", recursive=True)
    assert efs.cat_file(f"{r}/copy/b/two.txt") == b"2" * 70_000
    efs.rm(f"{r}/a", recursive=True)
    assert not efs.exists(f"{r}/a/one.txt")
    efs.rm_file(f"{r}/c/touched")
    assert not efs.exists(f"{r}/c/touched")
    assert efs.modified(f"{r}/copy/b/two.txt") is not None


@pytest.mark.parametrize("which", ["mem_efs", "local_efs"])
def test_transactions_publish_at_the_end(which, request):
    efs = request.getfixturevalue(which)
    a, b = p(efs, "ta"), p(efs, "tb")
    with efs.transaction:
        efs.pipe_file(a, b"A")
        with efs.open(b, "wb") as f:
            f.write(b"B" * 100_000)
        assert not efs.exists(a) and not efs.exists(b)
    assert efs.cat_file(a) == b"A" and efs.cat_file(b) == b"B" * 100_000
    with pytest.raises(RuntimeError), efs.transaction:
        efs.pipe_file(a, b"changed")
        raise RuntimeError("roll back")
    assert efs.cat_file(a) == b"A"
    assert sorted(x.rsplit("/", 1)[1] for x in efs.ls(efs.root, detail=False)) == ["ta", "tb"]


def test_import_is_light():
    import subprocess
    import sys
    code = ("import sys, integrations.encrypted_fs as e, fsspec; "
            "fsspec.get_filesystem_class('encrypted'); "
            "print(sorted(m for m in ('s3fs', 'boto3', 'botocore', 'sqlalchemy', 'kms_core.engine') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_reprs_and_errors_carry_no_key_material(mem_efs):
    path = p(mem_efs, "r")
    with mem_efs.open(path, "wb") as w:
        w.write(b"top secret payload")
        wrepr = repr(w)
    entry = next(iter(mem_efs.keys.write_cache._entries.values()))
    dk = entry.plaintext
    with mem_efs.open(path, "rb") as r:
        texts = [repr(mem_efs), repr(mem_efs.keys), repr(r), wrepr, repr(entry),
                 repr(r.header), repr(r._cipher), str(r.__dict__.get("header"))]
    raw = bytearray(mem_efs.fs.cat_file(path))
    raw[-1] ^= 1
    mem_efs.fs.pipe_file(path, bytes(raw))
    with pytest.raises(EncryptedFileError) as e:
        mem_efs.cat_file(path)
    texts.append(str(e.value))
    for t in texts:
        assert dk.hex() not in t and repr(dk) not in t and "top secret" not in t


def test_cache_max_bytes_and_max_age(shared_kms, counting_kms):
    import time
    counting = counting_kms(shared_kms)
    efs = new_mem(counting, cache_max_bytes=1000)
    root = f"/bytes-{uuid.uuid4().hex}"
    for i in range(3):
        efs.pipe_file(f"{root}/{i}", b"x" * 600)
    # 600 then 1200 bytes under the first key: the third file needs a new one.
    assert counting.calls.count("generate_data_key") == 2
    counting.calls.clear()
    aged = new_mem(counting, cache_max_age=0.05)
    aged.pipe_file(f"{root}/a", b"1")
    aged.pipe_file(f"{root}/b", b"2")
    time.sleep(0.2)
    aged.pipe_file(f"{root}/c", b"3")
    assert counting.calls.count("generate_data_key") == 2


def test_cache_counts_bytes_of_concurrent_writers(shared_kms, counting_kms):
    """Streamed files add their size to the shared key's byte count under the
    cache's lock: concurrent writers lose no bytes."""
    from concurrent.futures import ThreadPoolExecutor
    counting = counting_kms(shared_kms)
    efs = new_mem(counting)
    root = f"/conc-{uuid.uuid4().hex}"

    def write(i: int) -> None:
        with efs.open(f"{root}/{i}", "wb") as f:
            f.write(b"y" * (100 + i))

    write(0)  # the key is cached before the race (first writers may each miss)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(1, 200)))
    assert counting.calls.count("generate_data_key") == 1
    (entry,) = efs.keys.write_cache._entries.values()
    assert entry.uses == 200
    assert entry.bytes == sum(100 + i for i in range(200))


def test_memory_writes_use_only_public_fsspec_api(mem_efs):
    """memory:// files are written to an uncommitted fsspec MemoryFile and
    committed on close (no private MemoryFileSystem attributes; this pins the
    behaviour of the fsspec installed, within pyproject's range): nothing is
    visible, not even an empty file, until close; a failed write leaves the old
    object; listing, sizes and timestamps work as for any committed file."""
    import fsspec.implementations.memory as memory

    path = p(mem_efs, "pub")
    mem_efs.pipe_file(path, b"old")
    f = mem_efs.open(path, "wb")
    f.write(os.urandom(3 * C))
    assert mem_efs.cat_file(path) == b"old"
    assert isinstance(mem_efs.fs.store[path], memory.MemoryFile)
    f.close()
    assert mem_efs.size(path) == 3 * C and mem_efs.info(path)["type"] == "file"
    assert mem_efs.modified(path) >= mem_efs.created(path)
    new = p(mem_efs, "sub/new")
    with mem_efs.open(new, "wb") as g:
        g.write(b"x" * 10)
        assert not mem_efs.exists(new)
    assert mem_efs.ls(p(mem_efs, "sub"), detail=False) == [new]
    with pytest.raises(FileExistsError):
        mem_efs.open(p(mem_efs, "pub/child"), "wb")  # a file is not a folder
    with pytest.raises(IsADirectoryError):
        mem_efs.open(p(mem_efs, "sub"), "wb")
