"""Fixtures for the encrypted filesystem: a shared embedded KMS client, a real
S3 endpoint (moto's ThreadedMotoServer on a free loopback port, driven through
s3fs) and encrypted filesystems over memory, local and S3."""
from __future__ import annotations

import os
import socket
import uuid

import pytest

import kms_core


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CountingKMS:
    """Passes every call through to a real client and counts them."""

    def __init__(self, client):
        self._client = client
        self.calls: list[str] = []

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if callable(attr) and not name.startswith("_") and name not in ("exceptions", "meta"):
            def call(*a, **kw):
                self.calls.append(name)
                return attr(*a, **kw)
            return call
        return attr


@pytest.fixture
def counting_kms():
    return CountingKMS


@pytest.fixture(scope="session")
def shared_kms(tmp_path_factory):
    """One embedded engine for the whole session (fresh store and root key)."""
    home = tmp_path_factory.mktemp("kms-home")
    return kms_core.client(home=str(home), root_key=os.urandom(32))


@pytest.fixture(scope="session")
def moto_server():
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                            "AWS_PROFILE", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    os.environ.pop("AWS_PROFILE", None)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def s3_options(moto_server):
    """storage_options for s3fs against the moto server."""
    return {"key": "testing", "secret": "testing",
            "client_kwargs": {"endpoint_url": moto_server}}


@pytest.fixture(scope="session")
def s3(s3_options):
    import s3fs
    return s3fs.S3FileSystem(skip_instance_cache=True, **s3_options)


@pytest.fixture
def bucket(s3):
    name = "t-" + uuid.uuid4().hex[:12]
    s3.mkdir(name)
    yield name
    try:
        s3.rm(name, recursive=True)
    except FileNotFoundError:
        pass


@pytest.fixture
def mem_efs(shared_kms):
    from fsspec.implementations.memory import MemoryFileSystem

    from integrations.encrypted_fs import EncryptedFileSystem

    root = "/t" + uuid.uuid4().hex[:12]
    efs = EncryptedFileSystem(fs=MemoryFileSystem(), kms_client=shared_kms,
                              skip_instance_cache=True)
    efs.root = root
    yield efs
    efs.fs.rm(root, recursive=True) if efs.fs.exists(root) else None


@pytest.fixture
def local_efs(shared_kms, tmp_path):
    from fsspec.implementations.local import LocalFileSystem

    from integrations.encrypted_fs import EncryptedFileSystem

    efs = EncryptedFileSystem(fs=LocalFileSystem(), kms_client=shared_kms,
                              skip_instance_cache=True)
    efs.root = str(tmp_path)
    return efs
