"""HTTP limits of `kms serve` on real sockets (#16.2), the port check (#16.9) and
strict request reading (duplicate headers, BOM, UTF-16, duplicate JSON keys).

Every wait is bounded by a socket timeout; no assertion is about speed.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from .test_audit_trail import _events_for
from .test_http import sign

LIMITS = ("--max-header-bytes", "4096", "--header-timeout", "1", "--body-timeout", "1",
          "--idle-timeout", "1", "--max-connections", "20")


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    import os

    from .conftest import Server

    srv = Server(tmp_path_factory.mktemp("kms-limited"), os.urandom(32), *LIMITS).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def limited_key(limited):
    return limited.create_access_key("alice")


def _connect(server, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def _read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (bounded by the socket's timeout)."""
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk


def _parse(raw: bytes) -> tuple[int, dict, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body) if body else {}


def _works(server, key) -> None:
    """A legitimate request is answered."""
    assert "Keys" in server.client(key).list_keys()


def test_oversized_header_block_is_refused_early(limited, limited_key):
    """A 64 MB header block is cut off after the limit (plus at most one read), answered 431."""
    s = _connect(limited)
    sent = 0
    try:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        chunk = b"a" * 65536
        while sent < 64 * 1024 * 1024:
            s.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    raw = _read_all(s)
    s.close()
    assert sent < 8 * 1024 * 1024  # the server stopped reading long before 64 MB
    if raw:  # the answer may be lost to the reset while we were still sending
        status, headers, body = _parse(raw)
        assert status == 431 and body["__type"] == "RequestEntityTooLargeException"
        assert headers["connection"] == "close" and headers["x-amzn-requestid"]
    _works(limited, limited_key)


def test_header_limit_answer(limited):
    s = _connect(limited)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n")
    status, _, body = _parse(_read_all(s))
    s.close()
    assert (status, body["__type"]) == (431, "RequestEntityTooLargeException")
    assert "4096 bytes" in body["message"]


def test_unfinished_head_times_out(limited):
    s = _connect(limited)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
    status, _, body = _parse(_read_all(s))
    s.close()
    assert (status, body["__type"]) == (408, "RequestTimeoutException")


def test_silent_and_idle_connections_are_closed(limited, limited_key):
    silent = _connect(limited)
    assert _read_all(silent) == b""  # closed by the server, no bytes sent either way
    silent.close()
    # After a request, the keep-alive connection is closed once idle too.
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", limited.port, timeout=10)
    c.request("GET", "/health")
    assert c.getresponse().read() == b'{"status":"ok"}'
    assert _read_all(c.sock) == b""
    c.close()


def test_short_body_times_out_and_is_audited(limited, limited_key):
    body = b'{"Limit": 5}'
    headers = sign(limited, limited_key, body, "TrentService.ListKeys")
    headers["Content-Length"] = "100"
    headers["Host"] = f"127.0.0.1:{limited.port}"
    s = _connect(limited)
    s.sendall(b"POST / HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
              + b"\r\n" + body)
    status, h, answer = _parse(_read_all(s))
    s.close()
    assert (status, answer["__type"]) == (408, "RequestTimeoutException")
    events = _events_for(limited, {h["x-amzn-requestid"]})
    assert [e["errorCode"] for e in events[h["x-amzn-requestid"]]] == ["RequestTimeoutException"]


def test_idle_connections_cannot_lock_clients_out(limited, limited_key):
    """Three times --max-connections idle or half-sent connections: the oldest are closed
    to make room, and legitimate requests are still answered."""
    hogs = []
    try:
        for i in range(60):
            s = _connect(limited)
            if i % 2:
                s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
            hogs.append(s)
        _works(limited, limited_key)
        _works(limited, limited_key)
    finally:
        for s in hogs:
            s.close()


def test_file_descriptor_limit(make_server):
    """With `ulimit -n 256`, 400 idle connections do not exhaust the server's descriptors."""
    srv = make_server("--idle-timeout", "30", "--header-timeout", "30", max_files=256)
    key = srv.create_access_key("bob")
    hogs = []
    try:
        for _ in range(400):
            hogs.append(_connect(srv))
        time.sleep(0.5)  # let the server accept them all
        _works(srv, key)
    finally:
        for s in hogs:
            s.close()
    assert "Too many open files" not in srv.log()


def test_malformed_http_gets_a_json_error(limited):
    s = _connect(limited)
    s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
    status, h, body = _parse(_read_all(s))
    s.close()
    assert status == 400 and body["__type"] == "SerializationException"
    assert h["content-type"] == "application/x-amz-json-1.1"


def _raw(server, headers: list[tuple[str, str]], body: bytes) -> tuple[int, dict]:
    s = _connect(server)
    headers = [("Host", f"127.0.0.1:{server.port}"), ("Content-Length", str(len(body))), *headers]
    s.sendall(b"POST / HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers).encode()
              + b"Connection: close\r\n\r\n" + body)
    status, _, answer = _parse(_read_all(s))
    s.close()
    return status, answer


def test_a_second_authorization_header_is_refused(limited, limited_key):
    body = b"{}"
    headers = list(sign(limited, limited_key, body).items())
    auth = next(v for k, v in headers if k == "Authorization")
    status, answer = _raw(limited, [*headers, ("Authorization", auth)], body)
    assert (status, answer["__type"]) == (400, "IncompleteSignatureException")
    assert "authorization header must appear only once" in answer["message"]


@pytest.mark.parametrize("body", [
    b'\xef\xbb\xbf{"Limit": 5}',                      # UTF-8 byte order mark
    '{"Limit": 5}'.encode("utf-16"),                  # UTF-16 (json.loads(bytes) would guess it)
    '{"Limit": 5}'.encode("utf-32-le"),
    b'{"Limit": 5, "Limit": 1000}',                   # duplicate keys
    b'{"Limit": NaN}',
    b'{"Limit": ' + b"9" * 5000 + b"}",               # past the 4,300-digit limit
    b"[" * 5000 + b"]" * 5000,                        # deeper than the parser's recursion limit
    b'{"Marker": "\\ud800"}',                         # a lone surrogate escape
])
def test_bodies_aws_would_not_read(limited, limited_key, body):
    headers = list(sign(limited, limited_key, body).items())
    status, answer = _raw(limited, headers, body)
    assert (status, answer["__type"]) == (400, "SerializationException"), answer


def test_serve_refuses_a_port_in_use(tmp_path):
    """#16.9: say the port is taken and exit non-zero, before printing an address."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "kms_core.server", "--port", str(port), "--workers", "1"],
                              capture_output=True, text=True, timeout=60, check=False,
                              env={**__import__("os").environ, "KMS_HOME": str(tmp_path)})
    assert proc.returncode == 1
    assert f"kms: error: port {port} on 127.0.0.1 is already in use" in proc.stderr
    assert "kms serve: http" not in proc.stderr + proc.stdout
