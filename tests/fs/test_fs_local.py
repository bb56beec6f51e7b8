"""Local files: durable publication (fsync), and temporaries of killed writers
swept without ever touching a live writer's (issue #16.4)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from integrations.encrypted_fs import EncryptedFileSystem, localtemp

_WRITER = """
import os, sys, time
from integrations.encrypted_fs import EncryptedFileSystem


class KMS:  # only GenerateDataKey is needed to write
    def generate_data_key(self, KeyId, KeySpec, EncryptionContext):
        return {"Plaintext": os.urandom(32), "CiphertextBlob": b"w" * 64, "KeyId": KeyId}


efs = EncryptedFileSystem(target_protocol="file", kms_client=KMS(), skip_instance_cache=True)
f = efs.open(sys.argv[1], "wb")
f.write(os.urandom(3 * 2**20))
f.flush()  # whole chunks sealed so far reach the temporary
print(f._target, flush=True)
time.sleep(120)  # killed long before
"""


def _start_writer(path):
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, path], stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ))
    tmp = proc.stdout.readline().strip()
    assert tmp.endswith(localtemp.TEMP_SUFFIX) and os.path.getsize(tmp) > 2**20, tmp
    return proc, tmp


def _age(path, seconds):
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_sweep_removes_a_killed_writers_temporary_but_never_a_live_ones(tmp_path, local_efs):
    proc, tmp = _start_writer(str(tmp_path / "big.bin"))
    try:
        _age(tmp, 10 * localtemp.STALE_AFTER)  # old enough: only the lock protects it now
        assert local_efs.sweep_temp_files(str(tmp_path), older_than=0) == []
        assert os.path.exists(tmp)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert os.path.exists(tmp)  # the dead writer's leftover...
    _age(tmp, 10)
    assert local_efs.sweep_temp_files(str(tmp_path), older_than=60) == []  # ...too young yet
    assert local_efs.sweep_temp_files(str(tmp_path), older_than=5) == [tmp]
    assert not os.path.exists(tmp) and not os.path.exists(tmp_path / "big.bin")


def test_a_write_into_the_directory_sweeps_stale_temporaries(tmp_path, shared_kms):
    proc, tmp = _start_writer(str(tmp_path / "a.bin"))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    other = tmp_path / ".unrelated.kfse-tmp.txt"
    other.write_bytes(b"not ours")
    _age(other, 10 * localtemp.STALE_AFTER)
    _age(tmp, localtemp.STALE_AFTER - 60)
    efs = EncryptedFileSystem(target_protocol="file", kms_client=shared_kms, skip_instance_cache=True)
    efs.pipe_file(str(tmp_path / "b.bin"), b"hello")
    assert os.path.exists(tmp)  # younger than STALE_AFTER: kept
    _age(tmp, localtemp.STALE_AFTER + 1)
    efs2 = EncryptedFileSystem(target_protocol="file", kms_client=shared_kms, skip_instance_cache=True)
    efs2.pipe_file(str(tmp_path / "c.bin"), b"hello")
    assert not os.path.exists(tmp) and other.exists()
    assert efs2.cat_file(str(tmp_path / "b.bin")) == b"hello"
    assert sorted(os.listdir(tmp_path)) == [".unrelated.kfse-tmp.txt", "b.bin", "c.bin"]


def test_a_live_in_process_writer_is_never_swept(local_efs):
    path = f"{local_efs.root}/live"
    with local_efs.open(path, "wb") as f:
        f.write(os.urandom(200_000))
        _age(f._target, 10 * localtemp.STALE_AFTER)
        assert localtemp.sweep(local_efs.root, older_than=0) == []
        f.write(b"more")
    assert local_efs.cat_file(path)[-4:] == b"more"


@pytest.mark.parametrize("mode", ["wb", "xb"])
def test_local_writes_fsync_the_file_then_its_directory(local_efs, monkeypatch, mode):
    synced = []
    real = os.fsync

    def spy(fd):
        st = os.fstat(fd)
        synced.append("dir" if os.path.stat.S_ISDIR(st.st_mode) else st.st_size)
        return real(fd)
    monkeypatch.setattr(os, "fsync", spy)
    path = f"{local_efs.root}/durable"
    with local_efs.open(path, mode) as f:
        f.write(b"x" * 100_000)
    assert synced == [os.path.getsize(path), "dir"]
    synced.clear()
    off = EncryptedFileSystem(fs=local_efs.fs, kms_client=local_efs._kms_client, fsync=False,
                              skip_instance_cache=True)
    off.pipe_file(f"{local_efs.root}/fast", b"y")
    assert synced == [] and off.cat_file(f"{local_efs.root}/fast") == b"y"
