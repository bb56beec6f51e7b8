"""`kms fs encrypt` / `kms fs rewrap` / `kms fs inspect`: migration and rewrap tools."""
from __future__ import annotations

import json
import os
import pathlib

import pytest

import kms_core
from integrations.encrypted_fs import EncryptedFileSystem, cli, tools
from integrations.encrypted_fs import format as F
from integrations.encrypted_fs import writer as files_mod


def _tree(root, n=6):
    data = {}
    for i in range(n):
        rel = f"d{i % 2}/sub/f{i}.csv" if i % 3 else f"f{i}.csv"
        content = os.urandom(i * 40_000) if i else b""
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        data[str(path)] = content
    return data


def _efs():
    return EncryptedFileSystem(target_protocol="file", skip_instance_cache=True)


def test_encrypt_in_place_then_rerun_skips(kms_home, tmp_path):
    data = _tree(tmp_path / "data")
    s = tools.encrypt_tree(str(tmp_path / "data"), progress=False)
    assert sorted(s.done) == sorted(data) and not s.skipped
    efs = _efs()
    for path, content in data.items():
        assert pathlib.Path(path).read_bytes()[:4] == b"KFSE"
        assert efs.cat_file(path) == content
    again = tools.encrypt_tree(str(tmp_path / "data"), progress=False)
    assert not again.done and sorted(again.skipped) == sorted(data)
    assert kms_core.client().describe_key(
        KeyId="alias/aws/elasticfilesystem")["KeyMetadata"]["KeyManager"] == "AWS"


def test_interrupted_encrypt_loses_nothing_and_resumes(kms_home, tmp_path, monkeypatch):
    data = _tree(tmp_path / "data")
    order = sorted(data)

    seen = []

    def stop_after_two(path):
        seen.append(path)
        if len(seen) == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        tools.encrypt_tree(str(tmp_path / "data"), progress=False, after_file=stop_after_two)
    encrypted = [p for p in order if pathlib.Path(p).read_bytes()[:4] == b"KFSE"]
    assert encrypted == order[:2]
    for p in order[2:]:
        assert pathlib.Path(p).read_bytes() == data[p]

    # Now die in the middle of the next file's data.
    real_write = files_mod.EncryptedWriteFile.write
    calls = {"n": 0}

    def dying_write(self, b):
        calls["n"] += 1
        if calls["n"] == 1 and len(b) > 0:
            real_write(self, b[:len(b) // 2])
            raise KeyboardInterrupt
        return real_write(self, b)
    monkeypatch.setattr(files_mod.EncryptedWriteFile, "write", dying_write)
    with pytest.raises(KeyboardInterrupt):
        tools.encrypt_tree(str(tmp_path / "data"), progress=False)
    monkeypatch.setattr(files_mod.EncryptedWriteFile, "write", real_write)
    for p in order[2:]:
        assert pathlib.Path(p).read_bytes() == data[p]
    leftovers = [f for f in (tmp_path / "data").rglob("*") if f.is_file() and str(f) not in data]
    assert not leftovers

    s = tools.encrypt_tree(str(tmp_path / "data"), progress=False)
    assert sorted(s.skipped) == order[:2] and sorted(s.done) == order[2:]
    efs = _efs()
    assert all(efs.cat_file(p) == c for p, c in data.items())


def test_encrypt_local_dir_to_s3_prefix_via_cli(kms_home, tmp_path, s3_options, s3, bucket, capsys):
    data = _tree(tmp_path / "data", 4)
    rc = cli.main(["encrypt", str(tmp_path / "data"), f"s3://{bucket}/enc",
                   "--storage-options", json.dumps(s3_options), "--context", "team=data",
                   "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert "encrypted 4 files" in capsys.readouterr().out
    efs = EncryptedFileSystem(fs=s3, encryption_context={"team": "data"}, skip_instance_cache=True)
    for path, content in data.items():
        rel = os.path.relpath(path, tmp_path / "data")
        key = f"{bucket}/enc/{rel}"
        assert s3.cat_file(key, start=0, end=4) == b"KFSE"
        assert efs.cat_file(key) == content
        assert F.Header.parse(s3.cat_file(key, start=0, end=1024)).context == {"team": "data"}
    assert kms_core.client().describe_key(KeyId="alias/aws/s3")["KeyMetadata"]["KeyManager"] == "AWS"


def test_rewrap_moves_files_to_another_key_without_touching_chunks(kms_home, tmp_path):
    kms = kms_core.client()
    key_a = kms.create_key()["KeyMetadata"]["Arn"]
    key_b = kms.create_key()["KeyMetadata"]["Arn"]
    data = _tree(tmp_path / "data", 4)
    tools.encrypt_tree(str(tmp_path / "data"), progress=False, fs_options={"key_id": key_a})
    bodies = {p: pathlib.Path(p).read_bytes()[1024:] for p in data}

    seen = []

    def stop_after_one(path):
        seen.append(path)
        if len(seen) == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        tools.rewrap_tree(str(tmp_path / "data"), destination_key_id=key_b, progress=False,
                          after_file=stop_after_one)
    rc = cli.main(["rewrap", str(tmp_path / "data"), "--key-id", key_b, "--no-progress"])
    assert rc == 0
    kms.disable_key(KeyId=key_a)
    efs = _efs()
    for p, content in data.items():
        raw = pathlib.Path(p).read_bytes()
        assert F.Header.parse(raw).key_id == key_b
        assert raw[1024:] == bodies[p]
        assert efs.cat_file(p) == content


def test_rewrap_after_rotation_keeps_the_key(kms_home, tmp_path):
    kms = kms_core.client()
    key = kms.create_key()["KeyMetadata"]["Arn"]
    path = tmp_path / "one.bin"
    path.write_bytes(b"rotate me")
    tools.encrypt_tree(str(path), progress=False, fs_options={"key_id": key})
    before = F.Header.parse(path.read_bytes())
    kms.rotate_key_on_demand(KeyId=key)
    tools.rewrap_tree(str(path), progress=False)
    after = F.Header.parse(path.read_bytes())
    assert after.key_id == key and after.wrapped_key != before.wrapped_key
    assert after.tag == before.tag
    assert _efs().cat_file(str(path)) == b"rotate me"


def test_cli_inspect_and_errors(kms_home, tmp_path, capsys):
    p = tmp_path / "x.txt"
    p.write_bytes(b"hello")
    assert cli.main(["inspect", str(p)]) == 1
    err = capsys.readouterr().err
    assert "NotEncryptedError" in err and "Traceback" not in err
    assert cli.main(["encrypt", str(p), "--context", "a=b", "--no-progress"]) == 0
    capsys.readouterr()
    assert cli.main(["inspect", str(p), "--context", "a=b"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["encryption_context"] == {"a": "b"} and shown["plaintext_size"] == 5
    assert cli.main(["encrypt", str(tmp_path / "missing"), "--no-progress"]) == 1
    assert "Traceback" not in capsys.readouterr().err
    assert cli.main(["encrypt", str(p), "--context", "novalue"]) == 1
    assert cli.main(["frobnicate"]) == 2
    assert cli.main(["encrypt", str(p), "--storage-options", "[1]"]) == 1


def test_kms_command_line_dispatches_fs(kms_home, tmp_path):
    """`kms fs encrypt` / `kms fs inspect` through the project's `kms` entry point."""
    import subprocess
    import sys
    p = tmp_path / "cli.txt"
    p.write_bytes(b"via kms")
    def run(*a):
        return subprocess.run(
            [sys.executable, "-c", "import sys; from kms_core.cli import main; sys.exit(main(sys.argv[1:]))",
             "fs", *a], capture_output=True, text=True, env=dict(os.environ), check=False)
    done = run("encrypt", str(p), "--no-progress")
    assert done.returncode == 0, done.stderr
    shown = run("inspect", str(p))
    assert shown.returncode == 0 and json.loads(shown.stdout)["plaintext_size"] == 7
    assert "alias/aws/elasticfilesystem" not in shown.stdout  # headers name the key ARN
    assert _efs().cat_file(str(p)) == b"via kms"


@pytest.mark.parametrize("layout", ["tree", "single-file"])
def test_encrypt_to_a_local_destination_that_does_not_exist_yet(kms_home, tmp_path, capsys, layout):
    """DEST and the folders below it are created (issue #16.5)."""
    if layout == "tree":
        data = _tree(tmp_path / "data")
        src, dest = tmp_path / "data", tmp_path / "new" / "deeper"
    else:
        src = tmp_path / "one.csv"
        src.write_bytes(b"a,b\n1,2\n")
        data = {str(src): src.read_bytes()}
        dest = tmp_path / "new" / "dir" / "one.enc"
    rc = cli.main(["encrypt", str(src), str(dest), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    efs = _efs()
    for path, content in data.items():
        target = dest if layout == "single-file" else dest / os.path.relpath(path, src)
        assert pathlib.Path(target).read_bytes()[:4] == b"KFSE"
        assert efs.cat_file(str(target)) == content
        assert pathlib.Path(path).read_bytes() == content  # the source is untouched
