"""Migration tools: encrypt an existing prefix or directory, and rewrap headers.

Both are resumable and lose nothing when interrupted:

* ``encrypt_tree`` writes each file's encrypted form next to it (or to the
  destination), checks it decrypts to the same SHA-256 as the source, and only
  then moves it into place.  Files that already carry an encrypted header are
  skipped, so a rerun continues where the last run stopped.
* ``rewrap_tree`` asks KMS to ``ReEncrypt`` each file's wrapped data key (the
  key never leaves KMS), checks that the new wrapped key still opens the file's
  key commitment, and writes header + the unchanged chunks to a temporary
  sibling that replaces the file.  Chunks are copied, never re-encrypted.
"""
from __future__ import annotations

import hashlib
import os
import posixpath
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec

from . import localtemp
from .core import EncryptedFileSystem
from .errors import EncryptedFileError, NotEncryptedError
from .format import TRAILER, Header, make_trailer, parse_trailer

COPY_BLOCK = 4 * 2**20
_TMP_MARK = ".kfse-migrate"


@dataclass
class Summary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes: int = 0

    def __str__(self) -> str:
        return f"{len(self.done)} done, {len(self.skipped)} skipped, {self.bytes} bytes"


def _progress(total: int, enabled: bool, desc: str):
    from tqdm import tqdm  # noqa: PLC0415 - `kms fs` cold start: only when a tool runs
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                disable=not enabled, leave=False)


def _files(fs, root: str) -> dict[str, dict]:
    root = fs._strip_protocol(root)
    if not fs.exists(root):
        raise FileNotFoundError(f"no such file, directory or prefix: {root}")
    if fs.isfile(root):
        return {root: fs.info(root)}
    return {k: v for k, v in fs.find(root, detail=True).items()
            if v.get("type") == "file" and _TMP_MARK not in posixpath.basename(k)}


def _sibling(path: str) -> str:
    parent, _, name = path.rpartition("/")
    return f"{parent}/.{name}.{uuid.uuid4().hex[:8]}{_TMP_MARK}"


def _cleanup_leftovers(fs, root: str) -> None:
    """Temporary siblings of an interrupted run (the originals are intact)."""
    root = fs._strip_protocol(root)
    if not fs.isdir(root):
        return
    for p in fs.find(root):
        if _TMP_MARK in posixpath.basename(p):
            fs.rm_file(p)


def encrypt_tree(src: str, dest: str | None = None, *, storage_options: Mapping | None = None,
                 fs_options: Mapping | None = None, progress: bool = True,
                 after_file: Callable[[str], None] | None = None) -> Summary:
    """Encrypt every file under ``src`` in place, or into ``dest`` (same relative names)."""
    plain_fs, src_root = fsspec.core.url_to_fs(src, **dict(storage_options or {}))
    if dest is None:
        dest_inner, dest_root = plain_fs, src_root
    else:
        dest_inner, dest_root = fsspec.core.url_to_fs(dest, **dict(storage_options or {}))
    efs = EncryptedFileSystem(fs=dest_inner, skip_instance_cache=True, **dict(fs_options or {}))
    in_place = dest is None
    _cleanup_leftovers(dest_inner, dest_root)
    files = _files(plain_fs, src_root)
    summary = Summary()
    single = plain_fs.isfile(src_root)
    dest_is_dir = not in_place and dest_inner.isdir(dest_root)
    with _progress(sum(v.get("size") or 0 for v in files.values()), progress, "encrypt") as bar:
        for path in sorted(files):
            if in_place:
                target = path
            elif single:
                target = posixpath.join(dest_root, posixpath.basename(path)) if dest_is_dir \
                    else dest_root
            else:
                target = posixpath.join(dest_root, posixpath.relpath(path, src_root))
            if _already_encrypted(efs, target):
                summary.skipped.append(path)
                bar.update(files[path].get("size") or 0)
                continue
            if efs._is_local:  # object stores have no folders to create
                dest_inner.makedirs(posixpath.dirname(target) or ".", exist_ok=True)
            tmp = _sibling(target)
            digest = hashlib.sha256()
            with plain_fs.open(path, "rb") as fin, efs.open(tmp, "wb") as fout:
                while True:
                    block = fin.read(COPY_BLOCK)
                    if not block:
                        break
                    digest.update(block)
                    fout.write(block)
                    bar.update(len(block))
            if _sha256(efs, tmp) != digest.digest():
                efs.fs.rm_file(tmp)
                raise EncryptedFileError("verification failed: the encrypted copy differs", path)
            _replace(efs, tmp, target)
            summary.done.append(path)
            summary.bytes += files[path].get("size") or 0
            if after_file is not None:
                after_file(path)
    return summary


def _already_encrypted(efs: EncryptedFileSystem, path: str) -> bool:
    if not efs.fs.exists(path):
        return False
    try:
        header, f, _size, _ = efs.open_header(path)
        f.close()
    except NotEncryptedError:
        return False
    except EncryptedFileError:
        return False
    return header is not None


def _sha256(efs: EncryptedFileSystem, path: str) -> bytes:
    digest = hashlib.sha256()
    with efs.open(path, "rb") as f:
        while True:
            block = f.read(COPY_BLOCK)
            if not block:
                break
            digest.update(block)
    return digest.digest()


def _replace(efs: EncryptedFileSystem, tmp: str, target: str) -> None:
    if efs._is_local:  # durable, like the filesystem's own writes (localtemp.py)
        if efs.fsync:
            localtemp.sync_file(tmp)
        os.replace(tmp, target)
        if efs.fsync:
            localtemp.sync_dir(os.path.dirname(target) or ".")
    else:
        efs.fs.mv(tmp, target)


def rewrap_tree(url: str, *, destination_key_id: str | None = None,
                storage_options: Mapping | None = None, fs_options: Mapping | None = None,
                progress: bool = True, after_file: Callable[[str], None] | None = None) -> Summary:
    """Re-wrap every encrypted file's data key under ``destination_key_id``
    (default: the key it is wrapped under now, i.e. its current key material)."""
    inner, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    efs = EncryptedFileSystem(fs=inner, skip_instance_cache=True, **dict(fs_options or {}))
    _cleanup_leftovers(inner, root)
    files = _files(inner, root)
    summary = Summary()
    with _progress(len(files), progress, "rewrap") as bar:
        for path in sorted(files):
            try:
                header, f, size, _ = efs.open_header(path)
            except NotEncryptedError:
                summary.skipped.append(path)
                bar.update(1)
                continue
            try:
                _rewrap_one(efs, path, header, f, size, destination_key_id)
            finally:
                f.close()
            summary.done.append(path)
            summary.bytes += size
            bar.update(1)
            if after_file is not None:
                after_file(path)
    return summary


def _rewrap_one(efs: EncryptedFileSystem, path: str, header: Header, f: Any, size: int,
                destination_key_id: str | None) -> None:
    # Proves we may read the file (and that the old header is intact) first.
    old_dk = efs.keys.unwrap(header.key_id, header.wrapped_key, header.context, path)
    header.verify(old_dk, path)
    dest = destination_key_id or header.key_id
    key_id, wrapped = efs.keys.rewrap(header.key_id, header.wrapped_key, header.context, dest, path)
    new_header = header.with_wrapped_key(key_id, wrapped)
    new_dk = efs.keys.unwrap(key_id, wrapped, header.context, path)
    new_header.verify(new_dk, path)  # same data key: the commitment still opens
    # Body = everything between header and trailer; copied byte for byte.
    if header.is_default_layout:
        body_end = size
    else:
        f.seek(size - TRAILER.size)
        body_end = size - parse_trailer(f.read(TRAILER.size), path)[2]
    tmp = _sibling(path)
    with efs.fs.open(tmp, "wb") as out:
        out.write(new_header.encode())
        f.seek(header.header_size)
        remaining = body_end - header.header_size
        while remaining > 0:
            block = f.read(min(COPY_BLOCK, remaining))
            if not block:
                raise EncryptedFileError("object shrank while being rewrapped", path)
            out.write(block)
            remaining -= len(block)
        if not new_header.is_default_layout:
            out.write(make_trailer(new_header.chunk_log2, new_header.header_size,
                                   body_end - header.header_size))
    _replace(efs, tmp, path)
