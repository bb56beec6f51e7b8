"""`kms serve` as a process: HTTPS, graceful SIGTERM, bind-address safety, dev credentials."""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import signal
import time

import botocore.exceptions
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kms_core.server import cli

from .test_http import sign


def _make_ca_and_cert(d):
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kms-local test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": d / "ca.pem", "cert": d / "cert.pem", "key": d / "key.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    os.chmod(paths["key"], 0o600)
    return {k: str(v) for k, v in paths.items()}


def test_https_with_a_ca_bundle(make_server, tmp_path):
    pki = _make_ca_and_cert(tmp_path)
    srv = make_server("--tls-cert", pki["cert"], "--tls-key", pki["key"], scheme="https", ca=pki["ca"])
    assert srv.url.startswith("https://")
    kms = srv.client(srv.create_access_key("tls-user"))
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"over tls")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"over tls"
    # Without the CA bundle the certificate is not trusted.
    untrusted = srv.client(srv.create_access_key("other"), verify=True)
    with pytest.raises(botocore.exceptions.SSLError):
        untrusted.list_keys()
    # SIGTERM with an idle keep-alive TLS connection (kms's pool) still exits promptly.
    t0 = time.monotonic()
    assert srv.stop() == 0
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("workers", [2])  # the supervisor path; TLS test covers 1 worker
def test_sigterm_finishes_the_in_flight_request(make_server, workers):
    srv = make_server(workers=workers)
    key = srv.create_access_key("term")
    body = json.dumps({"Description": "made during shutdown"}).encode()
    headers = sign(srv, key, body, "TrentService.CreateKey")
    conn = srv.connection()
    conn.putrequest("POST", "/")
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    conn.send(body[:10])  # the request is in flight: headers and part of the body
    time.sleep(0.5)
    srv.signal(signal.SIGTERM)
    time.sleep(1.0)
    assert srv.proc.poll() is None, "the server exited with a request in flight"
    conn.send(body[10:])
    resp = conn.getresponse()
    result = json.loads(resp.read())
    assert resp.status == 200
    assert result["KeyMetadata"]["Description"] == "made during shutdown"
    conn.close()
    assert srv.proc.wait(20) == 0
    # The key really was stored before exit.
    from kms_core.engine import Engine

    eng = Engine.open(srv.settings())
    try:
        assert eng.call("DescribeKey", {"KeyId": result["KeyMetadata"]["KeyId"]})["KeyMetadata"]["Description"] \
            == "made during shutdown"
    finally:
        eng.close()


@pytest.mark.parametrize("host, tls, allow, ok, warns", [
    ("127.0.0.1", False, False, True, False),
    ("::1", False, False, True, False),
    ("localhost", False, False, True, False),
    ("0.0.0.0", False, False, False, False),
    ("10.1.2.3", False, False, False, False),
    ("kms.example.com", False, False, False, False),
    ("0.0.0.0", False, True, True, True),
    ("0.0.0.0", True, False, True, False),
])
def test_bind_address_policy(host, tls, allow, ok, warns):
    error, warning = cli.check_bind(host, tls, allow)
    assert (error is None) == ok
    assert (warning is not None) == warns
    if error:
        assert "--allow-insecure-bind" in error and "--tls-cert" in error


def test_serve_refuses_plain_http_on_a_public_address(capsys):
    assert cli.serve_main(["--host", "0.0.0.0", "--port", "1"]) == 2
    assert "refusing to serve plain HTTP on 0.0.0.0" in capsys.readouterr().err


def test_serve_argument_errors(capsys, tmp_path):
    assert cli.serve_main(["--tls-cert", str(tmp_path / "c.pem")]) == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err
    assert cli.serve_main(["--tls-cert", str(tmp_path / "c.pem"), "--tls-key", str(tmp_path / "k.pem")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_serve_reports_a_wrong_root_key(tmp_path, monkeypatch, capsys):
    import base64

    monkeypatch.setenv("KMS_HOME", str(tmp_path))
    monkeypatch.setenv("KMS_ROOT_KEY", base64.b64encode(os.urandom(32)).decode())
    monkeypatch.delenv("KMS_STORE_URL", raising=False)
    from kms_core.settings import Settings
    from kms_core.store import Store

    Store(Settings.from_env()).dispose()  # a store sealed with that key
    monkeypatch.setenv("KMS_ROOT_KEY", base64.b64encode(os.urandom(32)).decode())
    assert cli.serve_main(["--port", "1"]) == 1
    err = capsys.readouterr().err
    assert "root key does not open the store" in err and "Traceback" not in err


def test_dev_credentials_mode(make_server):
    srv = make_server("--dev-credentials")
    assert "DEVELOPMENT CREDENTIALS MODE" in srv.log() or "--dev-credentials" in srv.log()
    dummy = srv.client({"AccessKeyId": "testing", "SecretAccessKey": "testing"})
    key_id = dummy.create_key()["KeyMetadata"]["KeyId"]
    blob = dummy.encrypt(KeyId=key_id, Plaintext=b"p")["CiphertextBlob"]
    assert dummy.decrypt(CiphertextBlob=blob)["Plaintext"] == b"p"
    # Session tokens of dummy credentials are accepted too (moto-style test suites).
    assert srv.client({"AccessKeyId": "ASIATESTING", "SecretAccessKey": "x"},
                      aws_session_token="token").list_keys()["Keys"]
    # A real access key is still checked strictly.
    real = srv.create_access_key("dev")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        srv.client({"AccessKeyId": real["AccessKeyId"], "SecretAccessKey": "w" * 40}).list_keys()
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert srv.client(real).list_keys()["Keys"]
