"""`kms demo` part: the one-flag switch for files (wired in by kms_core.demo)."""
from __future__ import annotations

import pathlib


def run(kms, workdir: pathlib.Path, say) -> None:
    import fsspec  # noqa: PLC0415 - kms demo's cold start: loaded only for this step

    from .core import EncryptedFileSystem  # noqa: PLC0415 - as above
    from .format import Header  # noqa: PLC0415 - as above

    path = pathlib.Path(workdir) / "payroll.csv"
    say(f"fsspec: writing {path.name} through 'encrypted::file://' (the only change is the prefix)")
    with fsspec.open(f"encrypted::file://{path}", "w", encrypted={"kms_client": kms}) as f:
        f.write("name,salary\nalice,4200\nbob,3900\n")
    raw = path.read_bytes()
    header = Header.parse(raw)
    say(f"  on disk: {len(raw)} bytes, header {raw[:4].decode()}, plaintext visible: "
        f"{b'alice' in raw}; data key wrapped by {header.key_id}")
    managed = kms.describe_key(KeyId="alias/aws/elasticfilesystem")["KeyMetadata"]
    say(f"  no key was configured: the AWS managed key alias/aws/elasticfilesystem was created "
        f"on first use (KeyManager={managed['KeyManager']})")
    efs = EncryptedFileSystem(target_protocol="file", kms_client=kms, skip_instance_cache=True)
    with efs.open(str(path), "rb") as f:
        f.seek(-9, 2)
        tail = f.read().decode().strip()
    say(f"  read back: size {efs.size(str(path))} bytes (from the object size alone), "
        f"last row via seek: {tail!r}")
    path.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    try:
        efs.cat_file(str(path))
    except Exception as e:  # the typed error is the point of the demo
        say(f"  one flipped bit: {type(e).__name__}: {e}")
