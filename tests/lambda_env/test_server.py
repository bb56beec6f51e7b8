"""Through the real `kms serve` (SigV4 checked with a created access key):
the light client, console and CLI values, errors, .env files, AWS's own
snippet on what `kms env encrypt` made, and what a fresh process imports."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap

import pytest

from integrations.lambda_env import core, envfile, errors
from integrations.lambda_env.core import EnvSecrets, decrypt_value, encrypt_value
from integrations.lambda_env.remote import LightKMSClient
from integrations.lambda_env.sigv4 import Credentials

from .conftest import free_port, kms_command

SECRET = "server-side-secret-7"
HEAVY = ("boto3", "botocore", "sqlalchemy", "fsspec", "cryptography", "kms_core.engine",
         "urllib3", "concurrent.futures")

# The Lambda console's Python decryption snippet (as it shows it), made runnable.
AWS_SNIPPET = textwrap.dedent("""
    import boto3
    import os

    from base64 import b64decode

    ENCRYPTED = os.environ['DB_PASSWORD']
    # Decrypt code should run once and variables stored outside of the function
    # handler so that these are decrypted once per container
    DECRYPTED = boto3.client('kms').decrypt(
        CiphertextBlob=b64decode(ENCRYPTED),
        EncryptionContext={'LambdaFunctionName': os.environ['AWS_LAMBDA_FUNCTION_NAME']}
    )['Plaintext'].decode('utf-8')
    print(DECRYPTED)
""")


@pytest.fixture
def light(server_env):
    return LightKMSClient(server_env.url)


def test_light_client_round_trip_console_and_cli(light, boto_kms):
    console = encrypt_value(SECRET, kms=light, function_name="orders-api")
    cli_style = encrypt_value(SECRET, kms=light)
    # boto3 (botocore's signer and parser) agrees on both.
    resp = boto_kms.decrypt(CiphertextBlob=base64.b64decode(console),
                            EncryptionContext={"LambdaFunctionName": "orders-api"})
    assert resp["Plaintext"] == SECRET.encode()
    assert boto_kms.decrypt(CiphertextBlob=base64.b64decode(cli_style))["Plaintext"] == SECRET.encode()
    env = {"AWS_LAMBDA_FUNCTION_NAME": "orders-api", "A": console, "B": cli_style}
    assert EnvSecrets(kms=light, environ=env).get_many(["A", "B"]) == {"A": SECRET, "B": SECRET}


def test_values_made_by_boto3_decrypt_with_light_client(light, boto_kms):
    blob = boto_kms.encrypt(KeyId="alias/aws/lambda", Plaintext=SECRET.encode(),
                            EncryptionContext={"LambdaFunctionName": "fn-x"})["CiphertextBlob"]
    value = base64.b64encode(blob).decode()
    assert decrypt_value(value, kms=light, contexts=[{"LambdaFunctionName": "fn-x"}]) == SECRET.encode()


def test_generate_data_key_shape(light):
    resp = light.generate_data_key(KeyId="alias/aws/lambda", KeySpec="AES_256")
    assert len(resp["Plaintext"]) == 32 and isinstance(resp["CiphertextBlob"], bytes)
    assert resp["KeyId"].startswith("arn:aws:kms:us-east-1:")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_bad_signature_is_access_denied(server_env):
    creds = Credentials(server_env.env["AWS_ACCESS_KEY_ID"], "not-the-secret")
    bad = LightKMSClient(server_env.url, credentials=creds, retries=0)
    with pytest.raises(errors.AccessDeniedError) as e:
        encrypt_value(SECRET, name="DB_PASSWORD", kms=bad)
    assert e.value.code in ("InvalidSignatureException", "UnrecognizedClientException",
                            "AccessDeniedException")
    assert SECRET not in str(e.value)


def test_missing_credentials(server_env, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    with pytest.raises(errors.CredentialsError):
        encrypt_value(SECRET, kms=LightKMSClient(server_env.url))


def test_errors_through_server(light, boto_kms):
    key = boto_kms.create_key()["KeyMetadata"]["KeyId"]
    value = encrypt_value(SECRET, kms=light, key_id=key, function_name="fn")
    with pytest.raises(errors.WrongContextError):
        decrypt_value(value, name="V", kms=light, contexts=[{"LambdaFunctionName": "other"}, None])
    with pytest.raises(errors.NotCiphertextError):
        decrypt_value("hunter2", name="V", kms=light)
    with pytest.raises(errors.KeyUnavailableError) as e:
        encrypt_value(SECRET, kms=light, key_id="alias/nope")
    assert e.value.code == "NotFoundException"
    boto_kms.disable_key(KeyId=key)
    with pytest.raises(errors.KeyDisabledError) as e:
        decrypt_value(value, name="V", kms=light, contexts=[{"LambdaFunctionName": "fn"}])
    assert e.value.code == "DisabledException" and e.value.variable == "V"
    boto_kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    with pytest.raises(errors.KeyDeletedError):
        decrypt_value(value, name="V", kms=light, contexts=[{"LambdaFunctionName": "fn"}])


def test_unreachable_endpoint_is_typed_and_quick():
    client = LightKMSClient(f"http://127.0.0.1:{free_port()}", retries=1,
                            credentials=Credentials("AKID", "secret"))
    with pytest.raises(errors.KMSUnavailableError) as e:
        decrypt_value(base64.b64encode(b"x" * 64).decode(), name="DB_PASSWORD", kms=client)
    assert "DB_PASSWORD" in str(e.value)


def test_env_file_through_server_concurrently(light):
    values = {f"VAR_{i}": f"secret-number-{i}" for i in range(12)}
    text = envfile.encrypt_env_file(values, kms=light, function_name="orders-api")
    assert envfile.decrypt_env_file(text, kms=light) == values
    lines = text.split("\n")
    with pytest.raises(errors.EnvFileTamperedError):
        envfile.decrypt_env_file("\n".join([lines[0]] + lines[2:]), kms=light)


def test_module_api_uses_endpoint_from_environment(server_env, monkeypatch):
    value = encrypt_value(SECRET, kms=LightKMSClient(server_env.url), function_name="fn")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "fn")
    monkeypatch.setenv("DB_PASSWORD", value)
    assert core.get_secret("DB_PASSWORD") == SECRET
    assert isinstance(core._provider().kms, LightKMSClient)


def _run(cmd, env, **kw):
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, **kw)


def test_aws_snippet_decrypts_kms_env_encrypt_output(kms_server):
    env = kms_server.client_env()
    made = _run(kms_command() + ["env", "encrypt", SECRET, "--function-name", "orders-api"], env)
    assert made.returncode == 0, made.stderr
    env.update(DB_PASSWORD=made.stdout.strip(), AWS_LAMBDA_FUNCTION_NAME="orders-api")
    peer = _run([sys.executable, "-c", AWS_SNIPPET], env)
    assert peer.returncode == 0, peer.stderr
    assert peer.stdout.strip() == SECRET


def test_fresh_process_imports_nothing_heavy(kms_server):
    env = kms_server.client_env()
    made = _run(kms_command() + ["env", "encrypt", "DB_PASSWORD=" + SECRET, "API_TOKEN=tok-1"], env)
    assert made.returncode == 0, made.stderr
    for line in made.stdout.strip().split("\n"):
        name, value = line.split("=", 1)
        env[name] = value
    probe = textwrap.dedent(f"""
        import sys, json
        import integrations.lambda_env as le
        after_import = sorted(m for m in {HEAVY!r} if m in sys.modules)
        values = le.decrypt_environ(["DB_PASSWORD", "API_TOKEN"])
        after_decrypt = sorted(m for m in {HEAVY!r} if m in sys.modules)
        print(json.dumps([after_import, after_decrypt, values]))
    """)
    out = _run([sys.executable, "-c", probe], env)
    assert out.returncode == 0, out.stderr
    after_import, after_decrypt, values = json.loads(out.stdout)
    assert after_import == [] and after_decrypt == []
    assert values == {"DB_PASSWORD": SECRET, "API_TOKEN": "tok-1"}


def test_cli_exec_through_server(kms_server, tmp_path):
    env = kms_server.client_env()
    plain = tmp_path / ".env"
    plain.write_text(f"DB_PASSWORD={SECRET}\n")
    enc = tmp_path / ".env.enc"
    made = _run(kms_command() + ["env", "encrypt", "--file", str(plain), "-o", str(enc)], env)
    assert made.returncode == 0, made.stderr
    child = _run(kms_command() + ["env", "exec", "--file", str(enc), "--", sys.executable, "-c",
                                  "import os; print(os.environ['DB_PASSWORD'])"], env)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == SECRET


def _pki(tmp_path):
    """A CA and a server certificate for 127.0.0.1 (test-only PKI)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lambda-env test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


def test_light_client_over_https(tmp_path, monkeypatch):
    from .conftest import start_server
    pki = _pki(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    server = start_server(home, "--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"]),
                          scheme="https")
    try:
        creds = Credentials(server.env["AWS_ACCESS_KEY_ID"], server.env["AWS_SECRET_ACCESS_KEY"])
        untrusted = LightKMSClient(server.url, credentials=creds, retries=0)
        monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
        with pytest.raises(errors.KMSUnavailableError):  # self-signed CA not trusted
            encrypt_value(SECRET, kms=untrusted)
        monkeypatch.setenv("AWS_CA_BUNDLE", str(pki["ca"]))
        client = LightKMSClient(server.url, credentials=creds)
        value = encrypt_value(SECRET, kms=client, function_name="fn")
        assert decrypt_value(value, kms=client, contexts=[{"LambdaFunctionName": "fn"}]) == SECRET.encode()
    finally:
        server.stop()


def test_value_made_by_aws_cli_decrypts(kms_server, server_env):
    # The "CLI way": `aws kms encrypt` (AWS CLI v1), no encryption context.
    env = kms_server.client_env()
    made = _run(["aws", "kms", "encrypt", "--endpoint-url", kms_server.url, "--key-id",
                 "alias/aws/lambda", "--plaintext", SECRET, "--output", "text",
                 "--query", "CiphertextBlob"], env)
    assert made.returncode == 0, made.stderr
    env = {"AWS_LAMBDA_FUNCTION_NAME": "orders-api", "DB_PASSWORD": made.stdout.strip()}
    secrets = EnvSecrets(kms=LightKMSClient(kms_server.url), environ=env)
    assert secrets.get("DB_PASSWORD") == SECRET


def test_light_client_request_shape_matches_botocore(server_env, boto_kms):
    """Same signed headers as boto3 sends (content-type;host;x-amz-date;x-amz-target)."""
    from integrations.lambda_env import sigv4 as our_sigv4
    seen = {}
    real_sign = our_sigv4.sign

    def spy(*args, **kwargs):
        out = real_sign(*args, **kwargs)
        seen["auth"] = out["Authorization"]
        return out
    import unittest.mock as um
    with um.patch.object(our_sigv4, "sign", spy):
        LightKMSClient(server_env.url).encrypt(KeyId="alias/aws/lambda", Plaintext=b"x")
    assert "SignedHeaders=content-type;host;x-amz-date;x-amz-target," in seen["auth"]
    assert f"Credential={server_env.env['AWS_ACCESS_KEY_ID']}/" in seen["auth"]
    assert "/us-east-1/kms/aws4_request" in seen["auth"]


def test_ipv6_endpoint_is_well_formed():
    client = LightKMSClient(f"http://[::1]:{free_port()}", retries=0,
                            credentials=Credentials("AKID", "secret"))
    with pytest.raises(errors.KMSUnavailableError):  # refused (or no IPv6), not a URL error
        encrypt_value(SECRET, kms=client)
    with pytest.raises(ValueError):
        LightKMSClient("ftp://example.com")


def test_no_secret_in_logs_through_server(light, caplog):
    import logging
    caplog.set_level(logging.DEBUG)
    value = encrypt_value(SECRET, kms=light, function_name="fn")
    env = {"AWS_LAMBDA_FUNCTION_NAME": "fn", "DB_PASSWORD": value, "BAD": "hunter2-plain"}
    s = EnvSecrets(kms=light, environ=env)
    assert s.decrypt_environ(["DB_PASSWORD"], into_environ=False) == {"DB_PASSWORD": SECRET}
    with pytest.raises(errors.NotCiphertextError):
        s.get("BAD")
    assert any("DB_PASSWORD" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        text = record.getMessage() + str(record.args)
        assert SECRET not in text and value not in text and "hunter2-plain" not in text
