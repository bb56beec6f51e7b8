"""encrypted:: over a real S3 endpoint (moto's ThreadedMotoServer) through s3fs."""
from __future__ import annotations

import base64
import os

import fsspec
import pytest

from integrations.encrypted_fs import EncryptedFileSystem, TruncatedFileError
from integrations.encrypted_fs import files as files_mod
from integrations.encrypted_fs import format as F

MiB = 2**20


@pytest.fixture
def s3_efs(s3, shared_kms):
    return EncryptedFileSystem(fs=s3, kms_client=shared_kms, skip_instance_cache=True)


def test_multipart_streaming_write_and_ranged_reads(s3_efs, bucket):
    """≥ 20 MiB through s3fs multipart, with bounded memory, then ranged reads."""
    path = f"{bucket}/big.bin"
    piece = os.urandom(MiB)
    pieces = 21
    with s3_efs.open(path, "wb", block_size=5 * MiB) as f:
        for i in range(pieces):
            f.write(piece[i:] + piece[:i])
            f.flush()  # the sealed batches reach the target (a thread of the writer's own writes them)
            assert f._sink._f.buffer.tell() <= 5 * MiB  # the target's part buffer
        assert f._sink._f.parts, "expected a multipart upload"
    size = pieces * MiB
    assert s3_efs.size(path) == size
    assert s3_efs.fs.size(path) == F.DEFAULT_HEADER_SIZE + F.ciphertext_body_size(size, 65536)
    def expect(a, b):
        return b"".join(piece[i:] + piece[:i] for i in range(pieces))[a:b]
    assert s3_efs.cat_file(path, size - 100) == expect(size - 100, size)
    assert s3_efs.cat_file(path, 7 * MiB + 3, 7 * MiB + 70_000) == expect(7 * MiB + 3, 7 * MiB + 70_000)
    with s3_efs.open(path, "rb") as f:
        total = 0
        while True:
            block = f.read(4 * MiB)
            if not block:
                break
            total += len(block)
    assert total == size


_BOUNDED_WRITE = """
import os, sys, tracemalloc
from integrations.encrypted_fs import EncryptedFileSystem
from integrations.encrypted_fs.writer import _BATCH, _BEHIND_BATCH, _BEHIND_BUFFERS
from integrations.encrypted_fs.pipeline import window


class KMS:  # only GenerateDataKey is needed to write
    def generate_data_key(self, KeyId, KeySpec, EncryptionContext):
        return {"Plaintext": os.urandom(32), "CiphertextBlob": b"w" * 64, "KeyId": KeyId}


efs = EncryptedFileSystem(target_protocol="file", kms_client=KMS(), skip_instance_cache=True)
piece = os.urandom(2**20)
efs.pipe_file(sys.argv[1] + "/warm", b"x")  # data key cached, imports done
tracemalloc.start()
with efs.open(sys.argv[1] + "/big", "wb") as f:
    for _ in range(24):
        f.write(piece)
print(tracemalloc.get_traced_memory()[1], _BATCH, efs.size(sys.argv[1] + "/big"), window(),
      _BEHIND_BATCH * _BEHIND_BUFFERS)
"""


def test_streaming_write_memory_is_bounded(tmp_path):
    """Over local files (no target buffer), a 24 MiB write in 1 MiB pieces
    allocates, beyond the pieces, the chunk held back, one batch of ciphertext
    (512 KiB and its tags) and, with worker threads, the write-behind thread's
    buffers (_BEHIND_BUFFERS batches of _BEHIND_BATCH and their tags), whatever
    the size.  Measured in a process of its own: tracemalloc counts every
    thread's allocations, and this session runs S3 client and server threads."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _BOUNDED_WRITE, str(tmp_path)], check=True,
                         capture_output=True, text=True, timeout=120).stdout
    peak, batch, size, jobs, behind = map(int, out.split())
    assert batch <= 2**19
    behind = behind * 65552 // 65536 if jobs > 2 else 0  # one worker: no threads
    assert peak < 65536 + (batch // 65536) * 65552 + behind + 128 * 1024, peak
    assert size == 24 * MiB


def test_small_file_reads_in_one_request(s3_efs, bucket, monkeypatch):
    path = f"{bucket}/small"
    s3_efs.pipe_file(path, b"tiny object")
    reads = []
    real = files_mod._Source.read
    monkeypatch.setattr(files_mod._Source, "read",
                        lambda self, a, b, s=None: reads.append((a, b, len(self._prefix))) or real(self, a, b, s))
    assert s3_efs.cat_file(path) == b"tiny object"
    assert all(b <= prefix for a, b, prefix in reads)  # served from the first GET


def test_exclusive_create_and_aborted_upload(s3_efs, bucket):
    path = f"{bucket}/x"
    s3_efs.pipe_file(path, b"first", mode="create")
    with pytest.raises(FileExistsError):
        s3_efs.pipe_file(path, b"second", mode="create")
    with pytest.raises(RuntimeError), s3_efs.open(path, "wb", block_size=5 * MiB) as f:
        f.write(os.urandom(12 * MiB))  # parts already uploaded
        raise RuntimeError("interrupted")
    assert s3_efs.cat_file(path) == b"first"
    s3_efs.fs.invalidate_cache()
    assert s3_efs.fs.ls(bucket, detail=False) == [path]


def test_truncated_object_on_s3_is_detected(s3_efs, bucket):
    path = f"{bucket}/t"
    s3_efs.pipe_file(path, os.urandom(200_000))
    raw = s3_efs.fs.cat_file(path)
    s3_efs.fs.pipe_file(path, raw[:F.DEFAULT_HEADER_SIZE + 2 * (65536 + 16)])
    with pytest.raises(TruncatedFileError):
        s3_efs.cat_file(path, -10)


def test_sizes_on_s3_for_both_layouts(s3, shared_kms, bucket):
    default = EncryptedFileSystem(fs=s3, kms_client=shared_kms, skip_instance_cache=True)
    small_chunks = EncryptedFileSystem(fs=s3, kms_client=shared_kms, chunk_size=4096,
                                       skip_instance_cache=True)
    default.pipe_file(f"{bucket}/d/a", os.urandom(70_000))
    small_chunks.pipe_file(f"{bucket}/d/b", os.urandom(9_999))
    plain = EncryptedFileSystem(fs=s3, kms_client=shared_kms, allow_plaintext=True,
                                skip_instance_cache=True)
    s3.pipe_file(f"{bucket}/d/c", b"plain text")
    s3.invalidate_cache()
    assert {e["name"].rsplit("/", 1)[1]: e["size"] for e in default.ls(f"{bucket}/d")} == \
        {"a": 70_000, "b": 9_999, "c": 10}
    assert {e["name"].rsplit("/", 1)[1]: e["size"] for e in plain.ls(f"{bucket}/d")} == \
        {"a": 70_000, "b": 9_999, "c": 10}
    assert default.du(f"{bucket}/d") == 70_000 + 9_999 + 10


def test_kms_endpoint_option_with_a_boto3_client(s3, bucket, moto_server):
    """Any boto3 KMS endpoint works (here moto's KMS on the same server)."""
    efs = EncryptedFileSystem(fs=s3, kms_endpoint=moto_server,
                              kms_options={"region_name": "us-east-1"}, skip_instance_cache=True)
    client = efs.keys.client
    assert type(client).__module__.startswith("botocore")
    key = client.create_key()["KeyMetadata"]["Arn"]
    efs.key_id = key
    efs.pipe_file(f"{bucket}/k", b"via endpoint")
    assert F.Header.parse(s3.cat_file(f"{bucket}/k")).key_id == key
    assert efs.cat_file(f"{bucket}/k") == b"via endpoint"


def test_pandas_parquet_round_trip_through_encrypted_s3(s3_options, bucket, kms_home):
    pd = pytest.importorskip("pandas")
    import numpy as np
    import pyarrow.parquet as pq

    opts = {
        "s3": s3_options,
        "encrypted": {"kms_options": {"home": str(kms_home),
                                      "root_key": base64.b64decode(os.environ["KMS_ROOT_KEY"])},
                      "encryption_context": {"dataset": "trades"}},
    }
    n = 200_000
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"id": np.arange(n), "price": rng.random(n),
                       "note": rng.integers(0, 1000, n).astype(str)})
    url = f"encrypted::s3://{bucket}/trades.parquet"
    df.to_parquet(url, storage_options=opts, row_group_size=50_000)

    import s3fs
    raw = s3fs.S3FileSystem(skip_instance_cache=True, **s3_options).cat_file(f"{bucket}/trades.parquet")
    assert raw[:4] == b"KFSE" and b"PAR1" not in raw[:2000]

    back = pd.read_parquet(url, storage_options=opts)
    pd.testing.assert_frame_equal(back, df)

    # A one-column read seeks to the footer and fetches only what it needs.
    fs, path = fsspec.core.url_to_fs(url, **opts)
    fetched = []
    real = files_mod._Source.read
    files_mod._Source.read = lambda self, a, b, s=None: fetched.append(b - a) or real(self, a, b, s)
    try:
        col = pq.read_table(path, filesystem=fs, columns=["price"])
    finally:
        files_mod._Source.read = real
    assert col.column("price").to_pylist() == df["price"].tolist()
    assert sum(fetched) < 0.7 * len(raw), (sum(fetched), len(raw))


def test_transaction_on_s3(s3_efs, bucket):
    path = f"{bucket}/tx"
    with s3_efs.transaction:
        s3_efs.pipe_file(path, b"later")
        s3_efs.fs.invalidate_cache()
        assert not s3_efs.exists(path)
    s3_efs.fs.invalidate_cache()
    assert s3_efs.cat_file(path) == b"later"
