"""``EncryptedFileSystem``: client-side envelope encryption over any fsspec filesystem."""
from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import fsspec
from fsspec.implementations.chained import ChainedFileSystem
from fsspec.utils import stringify_path

from . import localtemp
from .errors import EncryptionContextMismatchError, NotEncryptedError
from .files import EncryptedReadFile, _Source
from .format import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_HEADER_SIZE,
    MAGIC,
    MAX_CHUNK_LOG2,
    MIN_CHUNK_LOG2,
    TRAILER,
    ChunkCipher,
    Header,
    Layout,
    default_plaintext_size,
    needs_trailer,
    new_header,
    plaintext_size_with_trailer,
)
from .keys import KeyProvider, managed_key_for
from .writer import EncryptedWriteFile

PATH_CONTEXT_KEY = "kms-fs:path"
_ATOMIC_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "oss", "r2"})
# First read of a file: the default header plus, for small files, the whole body.
_FIRST_READ = DEFAULT_HEADER_SIZE + DEFAULT_CHUNK_SIZE + 16


def _as_bool(v) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return bool(v)


def _as_context(v) -> dict[str, str]:
    if v is None or v == "":
        return {}
    if isinstance(v, str):  # FSSPEC_ENCRYPTED_ENCRYPTION_CONTEXT='{"k": "v"}'
        v = json.loads(v)
    if not isinstance(v, Mapping) or not all(isinstance(k, str) and isinstance(x, str)
                                             for k, x in v.items()):
        raise TypeError("encryption_context must be a dict of str to str")
    return dict(v)


class EncryptedFileSystem(ChainedFileSystem):
    """Wraps a filesystem so every file is envelope-encrypted with a KMS data key.

    ``fsspec.open("encrypted::s3://bucket/key", ...)``,
    ``fsspec.filesystem("encrypted", target_protocol="file")`` or
    ``EncryptedFileSystem(fs=existing_fs)``.  Options are plain data, so the
    filesystem pickles (dask workers rebuild their own KMS client):

    key_id: KMS key id, alias or ARN; default the AWS managed key of the storage
        kind (``alias/aws/s3`` for object stores, ``alias/aws/elasticfilesystem``
        for local and network paths).
    encryption_context: pairs sent to KMS, stored in and authenticated by each
        header; reading requires them.
    bind_path: add the file's path to the context (a moved or copied object then
        fails to read unless copied through this filesystem, which re-encrypts).
    chunk_size: plaintext bytes per chunk (power of two, 4 KiB to 16 MiB).
    kms_endpoint / kms_options: build the client with ``kms_core.client(endpoint_url=..., **kms_options)``;
        kms_client: an existing boto3-shaped KMS client (not picklable).
    allow_plaintext: read objects without an encrypted header as-is (migrations).
    fsync: local files only: ``fsync`` each finished file and then its directory
        around the rename that publishes it (default True; see localtemp.py).
    cache, cache_max_age, cache_max_files, cache_max_bytes: the data-key cache.
    """

    protocol = "encrypted"
    root_marker = ""

    def __init__(self, fs=None, target_protocol=None, target_options=None, fo=None, *,
                 key_id: str | None = None, encryption_context: Mapping[str, str] | None = None,
                 bind_path: bool = False, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 kms_endpoint: str | None = None, kms_options: Mapping[str, Any] | None = None,
                 kms_client=None, allow_plaintext: bool = False, cache: bool = True,
                 cache_max_age: float = 300.0, cache_max_files: int = 10_000,
                 cache_max_bytes: int = 2**36, fsync: bool = True, **kwargs):
        super().__init__(**kwargs)
        if fs is None:
            fs = fsspec.filesystem(target_protocol or "file", **(target_options or {}))
        elif target_protocol is not None:
            raise ValueError("give either fs= or target_protocol=, not both")
        if isinstance(fs, EncryptedFileSystem):
            raise ValueError("refusing to encrypt twice: fs is already an EncryptedFileSystem")
        self.fs = fs
        self.key_id = key_id or None
        self.encryption_context = _as_context(encryption_context)
        self.bind_path = _as_bool(bind_path)
        self.chunk_size = int(chunk_size)
        log2 = self.chunk_size.bit_length() - 1
        if self.chunk_size != 1 << log2 or not MIN_CHUNK_LOG2 <= log2 <= MAX_CHUNK_LOG2:
            raise ValueError("chunk_size must be a power of two from 4096 to 16777216")
        self.allow_plaintext = _as_bool(allow_plaintext)
        self.fsync = _as_bool(fsync)
        self._swept: dict[str, float] = {}  # directory -> when its stale temporaries were swept
        self.kms_endpoint = kms_endpoint
        self.kms_options = dict(kms_options or {})
        self._kms_client = kms_client
        self.keys = KeyProvider(self._make_client, cache=_as_bool(cache),
                                max_age=float(cache_max_age), max_files=int(cache_max_files),
                                max_bytes=int(cache_max_bytes))
        protos = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
        self._writes_are_atomic = any(p in _ATOMIC_PROTOCOLS for p in protos)
        self._is_local = any(p in ("file", "local") for p in protos)
        # Paths are the wrapped filesystem's paths.
        self._strip_protocol = self._strip

    # ------------------------------------------------------------ plumbing
    def _make_client(self):
        if self._kms_client is not None:
            return self._kms_client
        import kms_core  # noqa: PLC0415 - keeps `import integrations` light (test_import_is_light)
        if self.kms_endpoint:
            return kms_core.client(endpoint_url=self.kms_endpoint, **self.kms_options)
        return kms_core.client(**self.kms_options)

    def __reduce__(self):
        if self._kms_client is not None:
            raise TypeError("an EncryptedFileSystem built with kms_client= cannot be pickled; "
                            "pass kms_endpoint= or kms_options= (plain data) instead")
        return super().__reduce__()

    def __repr__(self) -> str:
        return f"<EncryptedFileSystem over {type(self.fs).__name__} key={self.effective_key_id!r}>"

    @property
    def effective_key_id(self) -> str:
        return self.key_id or managed_key_for(self.fs.protocol)

    def _strip(self, path):
        if isinstance(path, (list, tuple, set)):
            return [self._strip(p) for p in path]
        path = stringify_path(path)
        for prefix in ("encrypted::", "encrypted://"):
            if path.startswith(prefix):
                path = path[len(prefix):]
        return self.fs._strip_protocol(path)

    @staticmethod
    def _own(path):
        """Only our own prefix removed: the wrapped filesystem strips the rest."""
        if isinstance(path, str):
            if path.startswith("encrypted::"):
                return path[11:]
            if path.startswith("encrypted://"):
                return path[12:]
            return path
        return EncryptedFileSystem._own(stringify_path(path)) if not isinstance(
            path, (list, tuple, set)) else [EncryptedFileSystem._own(p) for p in path]

    def _parent(self, path):
        return self.fs._parent(self._strip(path))

    def unstrip_protocol(self, name: str) -> str:
        return "encrypted::" + self.fs.unstrip_protocol(name)

    def context_for(self, path: str) -> dict[str, str]:
        ctx = dict(self.encryption_context)
        if self.bind_path:
            ctx[PATH_CONTEXT_KEY] = path
        return ctx

    # ------------------------------------------------------------ opening
    def _open(self, path, mode="rb", block_size=None, autocommit=True, cache_options=None,
              **kwargs):
        # open() has already stripped the protocol.
        if mode == "rb":
            return self._open_read(path, **kwargs)
        if mode in ("wb", "xb"):
            if block_size is not None:  # the target's buffer / multipart part size
                kwargs["block_size"] = block_size
            return self._open_write(path, mode, autocommit=autocommit, **kwargs)
        raise NotImplementedError(
            f"mode {mode!r} is not supported on encrypted files (use rb, wb or xb; "
            "appending or updating in place would need re-encryption)")

    def _open_write(self, path: str, mode: str, autocommit: bool = True,
                    **kwargs) -> EncryptedWriteFile:
        ctx = self.context_for(path)
        entry = self.keys.data_key(self.effective_key_id, ctx, path)
        header, keys = new_header(entry.plaintext, entry.wrapped, entry.key_id, ctx,
                                  self.chunk_size)

        def count(nbytes: int) -> None:
            # A streamed file's size is known only now; counted under the cache's lock.
            self.keys.write_cache.add_bytes(entry, nbytes)

        return EncryptedWriteFile(self, path, mode, header, ChunkCipher(keys.content_key,
                                  header.chunk_size, path), on_close=count,
                                  autocommit=autocommit, **kwargs)

    def _commit_temp(self, tmp: str, path: str, exclusive: bool) -> None:
        """Move a finished temporary sibling into place (filesystems that are
        neither local nor object stores; local files: localtemp.LockedTemp)."""
        if exclusive and self.fs.exists(path):
            self.fs.rm_file(tmp)
            raise FileExistsError(path)
        self.fs.mv(tmp, path)

    def _sweep_once(self, directory: str) -> None:
        """Sweep a local directory's stale temporaries when first written to
        (then at most once per localtemp.STALE_AFTER)."""
        now = time.monotonic()
        if now - self._swept.get(directory, -localtemp.STALE_AFTER) >= localtemp.STALE_AFTER:
            self._swept[directory] = now
            localtemp.sweep(directory)

    def sweep_temp_files(self, path: str, older_than: float = localtemp.STALE_AFTER) -> list[str]:
        """Remove temporaries that killed writers left in a local directory
        (never a live writer's: see localtemp.py); returns their paths."""
        if not self._is_local:
            raise NotImplementedError("temporary files are swept on local filesystems only")
        return localtemp.sweep(self._strip(path), older_than)

    def open_header(self, path: str, _stripped: bool = False) -> tuple[Header, Any, int, bytes]:
        """(header, open inner file, object size, first bytes read)."""
        if not _stripped:
            path = self._strip(path)
        f = self.fs.open(path, "rb", **self._inner_read_kwargs())
        try:
            size = getattr(f, "size", None)
            if size is None or callable(size):
                size = self.fs.size(path)
            # Small files come whole in the first read (one GET on S3); large
            # ones only their header, so a random read fetches one chunk.
            head = f.read(size if size <= _FIRST_READ else DEFAULT_HEADER_SIZE)
            if head[:4] != MAGIC:
                raise NotEncryptedError("not an encrypted file (no KFSE header)", path)
            _, header_size = Header.parse_preamble(head, path)
            if header_size > len(head):
                head += f.read(header_size - len(head))
            return Header.parse(head, path), f, size, head
        except BaseException:
            f.close()
            raise

    @staticmethod
    def _inner_read_kwargs() -> dict:
        # Ranged reads fetch exactly what is asked for: no read-ahead of the
        # inner file (s3fs would otherwise fetch 50 MiB blocks).  Backends
        # without caches ignore the option.
        return {"cache_type": "none"}

    def _check_context(self, header: Header, path: str) -> None:
        for k, v in self.context_for(path).items():
            if header.context.get(k) != v:
                what = "bound path" if k == PATH_CONTEXT_KEY else f"pair {k!r}"
                raise EncryptionContextMismatchError(
                    f"the file's encryption context lacks the required {what}", path)

    def _open_read(self, path: str, **kwargs):
        try:
            header, f, size, head = self.open_header(path, _stripped=True)
        except NotEncryptedError:
            if self.allow_plaintext:
                return self.fs.open(path, "rb", **kwargs)
            raise
        try:
            self._check_context(header, path)
            keys = self.keys.file_keys(header, path)
            tail = None
            if not header.is_default_layout:
                f.seek(size - TRAILER.size)
                tail = f.read(TRAILER.size)
            layout = Layout.of(header, size, tail, path)
            src = _Source(f, size, head)
        except BaseException:
            f.close()
            raise
        return EncryptedReadFile(self, path, src, header, layout,
                                 ChunkCipher(keys.content_key, header.chunk_size, path))

    # ------------------------------------------------------------ listing
    def _fix_entries(self, entries: list[dict]) -> list[dict]:
        """Plaintext sizes: from the object size alone for default-layout files,
        one ranged read of the trailer otherwise (batched)."""
        out: list[dict] = []
        need: list[tuple[int, str, int]] = []
        for e in entries:
            e = dict(e)
            if e.get("type") == "file" and e.get("size") is not None:
                csize = e["size"]
                e["ciphertext_size"] = csize
                plain = None if self.allow_plaintext else default_plaintext_size(csize)
                if plain is not None:
                    e["size"] = plain
                elif self.allow_plaintext or needs_trailer(csize):
                    # (in pass-through mode every file is checked for the magic)
                    need.append((len(out), e["name"], csize))
            out.append(e)
        if need:
            starts, ends = [], []
            for _, _name, csize in need:
                if self.allow_plaintext:
                    starts.append(0)
                    ends.append(min(csize, 4))
                else:
                    starts.append(max(0, csize - TRAILER.size))
                    ends.append(csize)
            blobs = self.fs.cat_ranges([n for _, n, _ in need], starts, ends, on_error="return")
            for (i, name, csize), blob in zip(need, blobs, strict=True):
                if isinstance(blob, BaseException) or blob is None:
                    continue
                if self.allow_plaintext:
                    if blob[:4] != MAGIC:
                        continue  # plaintext object: its size is its size
                    plain = default_plaintext_size(csize)
                    if plain is None and needs_trailer(csize):
                        blob = self.fs.cat_file(name, start=max(0, csize - TRAILER.size), end=csize)
                        plain = plaintext_size_with_trailer(csize, blob)
                else:
                    plain = plaintext_size_with_trailer(csize, blob)
                if plain is not None:
                    out[i]["size"] = plain
        return out

    def ls(self, path, detail=True, **kwargs):
        res = self.fs.ls(self._own(path), detail=detail, **kwargs)
        return self._fix_entries(res) if detail else res

    def info(self, path, **kwargs):
        return self._fix_entries([self.fs.info(self._own(path), **kwargs)])[0]

    def find(self, path, maxdepth=None, withdirs=False, detail=False, **kwargs):
        res = self.fs.find(self._own(path), maxdepth=maxdepth, withdirs=withdirs, detail=True,
                           **kwargs)
        if not detail:
            return sorted(res)
        fixed = self._fix_entries(list(res.values()))
        return {e["name"]: e for e in fixed}

    def exists(self, path, **kwargs):
        return self.fs.exists(self._own(path), **kwargs)

    def isdir(self, path):
        return self.fs.isdir(self._own(path))

    def isfile(self, path):
        return self.fs.isfile(self._own(path))

    def lexists(self, path, **kwargs):
        return self.fs.lexists(self._own(path), **kwargs)

    def mkdir(self, path, create_parents=True, **kwargs):
        return self.fs.mkdir(self._own(path), create_parents=create_parents, **kwargs)

    def makedirs(self, path, exist_ok=False):
        return self.fs.makedirs(self._own(path), exist_ok=exist_ok)

    def rmdir(self, path):
        return self.fs.rmdir(self._own(path))

    def rm_file(self, path):
        return self.fs.rm_file(self._own(path))

    def _rm(self, path):
        return self.fs.rm_file(self._own(path))

    def rm(self, path, recursive=False, maxdepth=None):
        return self.fs.rm(self._own(path), recursive=recursive, maxdepth=maxdepth)

    def created(self, path):
        return self.fs.created(self._own(path))

    def modified(self, path):
        return self.fs.modified(self._own(path))

    def invalidate_cache(self, path=None):
        self.fs.invalidate_cache(None if path is None else self._own(path))

    # ------------------------------------------------------------ copy / move
    def cp_file(self, path1, path2, **kwargs):
        path1, path2 = self._strip(path1), self._strip(path2)
        if not self.bind_path:
            # Headers don't name the path: a server-side copy stays valid.
            return self.fs.cp_file(path1, path2, **kwargs)
        self._reencrypt(path1, path2)

    def _reencrypt(self, path1: str, path2: str) -> None:
        with self.open(path1, "rb") as src, self.open(path2, "wb") as dst:
            buf = bytearray(4 * 2**20)
            view = memoryview(buf)
            while True:
                n = src.readinto(view)
                if not n:
                    break
                dst.write(view[:n])

    def mv(self, path1, path2, recursive=False, maxdepth=None, **kwargs):
        if not self.bind_path:
            return self.fs.mv(self._strip(path1), self._strip(path2), recursive=recursive,
                              maxdepth=maxdepth, **kwargs)
        return super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)

    # ------------------------------------------------------------ bulk data
    def cat_file(self, path, start=None, end=None, **kwargs):
        with self.open(path, "rb") as f:
            size = f.size
            start = 0 if start is None else (max(0, size + start) if start < 0 else start)
            end = size if end is None else (max(0, size + end) if end < 0 else min(end, size))
            if start >= end:
                return b""
            f.seek(start)
            return f.read(end - start)

    def pipe_file(self, path, value, mode="overwrite", **kwargs):
        if mode == "create" and self.exists(path):
            raise FileExistsError(path)
        with self.open(path, "xb" if mode == "create" else "wb", **kwargs) as f:
            f.write(value)

    # ------------------------------------------------------------ helpers for tools
    def is_encrypted(self, path: str) -> bool:
        """True if the object starts with the encrypted-file magic (one small read)."""
        path = self._strip(path)
        return self.fs.cat_file(path, start=0, end=4) == MAGIC


def register() -> None:
    """Register the ``encrypted`` protocol (the entry point does this when installed)."""
    fsspec.register_implementation("encrypted", EncryptedFileSystem, clobber=True)
