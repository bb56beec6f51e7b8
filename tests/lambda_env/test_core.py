"""Decrypting console- and CLI-style values with the embedded engine: contexts,
errors, caching, decrypt_environ, the handler decorator, no secret leaks."""
from __future__ import annotations

import base64
import json
import logging

import pytest

from integrations.lambda_env import core, errors
from integrations.lambda_env.core import EnvSecrets, decrypt_value, encrypt_value

SECRET = "pa55-w0rd-for-orders"


def console_value(kms, plaintext=SECRET, function="orders-api", key="alias/aws/lambda"):
    """What the Lambda console stores: base64(Encrypt(..., {LambdaFunctionName: fn}))."""
    blob = kms.encrypt(KeyId=key, Plaintext=plaintext.encode(),
                       EncryptionContext={"LambdaFunctionName": function})["CiphertextBlob"]
    return base64.b64encode(blob).decode()


def cli_value(kms, plaintext=SECRET, key="alias/aws/lambda"):
    """What `aws kms encrypt` gives: no encryption context."""
    blob = kms.encrypt(KeyId=key, Plaintext=plaintext.encode())["CiphertextBlob"]
    return base64.b64encode(blob).decode()


def test_console_value_decrypts_with_function_name(kms, monkeypatch):
    env = {"AWS_LAMBDA_FUNCTION_NAME": "orders-api", "DB_PASSWORD": console_value(kms)}
    assert EnvSecrets(kms=kms, environ=env).get("DB_PASSWORD") == SECRET


def test_cli_value_decrypts_with_and_without_function_name(kms):
    value = cli_value(kms)
    assert EnvSecrets(kms=kms, environ={"X": value}).get("X") == SECRET
    with_fn = {"X": value, "AWS_LAMBDA_FUNCTION_NAME": "orders-api"}
    assert EnvSecrets(kms=kms, environ=with_fn).get("X") == SECRET


def test_context_order_is_console_first_then_none(counting, kms):
    env = {"AWS_LAMBDA_FUNCTION_NAME": "orders-api", "A": console_value(kms), "B": cli_value(kms)}
    assert core.default_contexts(env) == [{"LambdaFunctionName": "orders-api"}, None]
    assert core.default_contexts({}) == [None]
    secrets = EnvSecrets(kms=counting, environ=env)
    secrets.get("A")
    assert counting.calls == ["decrypt"]  # console value: first try
    secrets.get("B")
    assert counting.calls == ["decrypt", "decrypt", "decrypt"]  # CLI value: second try


def test_encrypt_value_defaults_to_managed_lambda_key(kms):
    value = encrypt_value(SECRET, kms=kms, function_name="orders-api")
    blob = base64.b64decode(value)
    resp = kms.decrypt(CiphertextBlob=blob, EncryptionContext={"LambdaFunctionName": "orders-api"})
    assert resp["Plaintext"] == SECRET.encode()
    managed = kms.describe_key(KeyId="alias/aws/lambda")["KeyMetadata"]
    assert resp["KeyId"] == managed["Arn"]
    assert managed["KeyManager"] == "AWS"
    # CLI style: no context needed, and the console context is refused.
    plain = base64.b64decode(encrypt_value(SECRET, kms=kms))
    assert kms.decrypt(CiphertextBlob=plain)["Plaintext"] == SECRET.encode()
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=plain, EncryptionContext={"LambdaFunctionName": "x"})


def test_encrypt_value_with_customer_key_and_extra_context(kms):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    value = encrypt_value(b"\x00\xffbin", kms=kms, key_id=key, context={"stage": "prod"},
                          function_name="f")
    out = decrypt_value(value, kms=kms, contexts=[{"stage": "prod", "LambdaFunctionName": "f"}],
                        key_id=key)
    assert out == b"\x00\xffbin"


# --- errors ---------------------------------------------------------------------

def assert_clean(exc: BaseException, *secrets: str):
    text = str(exc) + repr(exc)
    for s in secrets:
        assert s not in text


def test_missing_variable(kms):
    with pytest.raises(errors.MissingSecretError) as e:
        EnvSecrets(kms=kms, environ={}).get("DB_PASSWORD")
    assert e.value.variable == "DB_PASSWORD" and "DB_PASSWORD" in str(e.value)
    with pytest.raises(errors.MissingSecretError):
        EnvSecrets(kms=kms, environ={"DB_PASSWORD": ""}).get("DB_PASSWORD")


@pytest.mark.parametrize("value", ["hunter2", "password", "not base64 at all!",
                                   base64.b64encode(b"short").decode()])
def test_not_a_ciphertext(counting, value):
    with pytest.raises(errors.NotCiphertextError) as e:
        EnvSecrets(kms=counting, environ={"API_TOKEN": value}).get("API_TOKEN")
    assert e.value.variable == "API_TOKEN" and "API_TOKEN" in str(e.value)
    assert_clean(e.value, value)
    assert counting.calls == []  # refused without calling KMS


def test_base64_garbage_is_refused_by_kms(kms):
    value = base64.b64encode(b"x" * 80).decode()
    with pytest.raises(errors.WrongContextError) as e:
        EnvSecrets(kms=kms, environ={"T": value}).get("T")
    assert e.value.code == "InvalidCiphertextException"
    assert_clean(e.value, value)


def test_wrong_context(kms):
    env = {"AWS_LAMBDA_FUNCTION_NAME": "other-fn", "DB_PASSWORD": console_value(kms)}
    with pytest.raises(errors.WrongContextError) as e:
        EnvSecrets(kms=kms, environ=env).get("DB_PASSWORD")
    msg = str(e.value)
    assert "DB_PASSWORD" in msg and "LambdaFunctionName=other-fn" in msg and "no context" in msg
    assert_clean(e.value, env["DB_PASSWORD"], SECRET)


def test_console_value_without_function_name_fails_typed(kms):
    with pytest.raises(errors.WrongContextError):
        EnvSecrets(kms=kms, environ={"X": console_value(kms)}).get("X")


def test_disabled_key(kms):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    value = cli_value(kms, key=key)
    kms.disable_key(KeyId=key)
    with pytest.raises(errors.KeyDisabledError) as e:
        EnvSecrets(kms=kms, environ={"DB_PASSWORD": value}).get("DB_PASSWORD")
    assert e.value.code == "DisabledException" and e.value.variable == "DB_PASSWORD"
    assert "disabled" in str(e.value)
    assert_clean(e.value, value, SECRET)


def test_key_pending_deletion(kms):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    value = cli_value(kms, key=key)
    kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    with pytest.raises(errors.KeyDeletedError) as e:
        EnvSecrets(kms=kms, environ={"DB_PASSWORD": value}).get("DB_PASSWORD")
    assert e.value.code == "KMSInvalidStateException"
    assert isinstance(e.value, errors.KeyUnavailableError)
    assert_clean(e.value, value, SECRET)


def test_key_deleted(kms, clock):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    value = cli_value(kms, key=key)
    kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    clock.advance(days=8)
    # Once deleted, KMS cannot tell the ciphertext's key from no key at all: the
    # engine answers InvalidCiphertextException (NotFoundException would map to
    # KeyDeletedError).
    with pytest.raises((errors.KeyDeletedError, errors.WrongContextError)) as e:
        EnvSecrets(kms=kms, environ={"DB_PASSWORD": value}).get("DB_PASSWORD")
    assert e.value.variable == "DB_PASSWORD"
    assert "deleted" in str(e.value)
    assert_clean(e.value, value, SECRET)


def test_pinned_key_mismatch(kms):
    other = kms.create_key()["KeyMetadata"]["KeyId"]
    value = cli_value(kms)
    with pytest.raises(errors.WrongKeyError) as e:
        EnvSecrets(kms=kms, environ={"X": value}, key_id=other).get("X")
    assert e.value.code == "IncorrectKeyException"


def test_errors_are_secret_errors_with_names():
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.SecretError)


# --- transforms -------------------------------------------------------------------

def test_transforms(kms):
    env = {"CFG": cli_value(kms, json.dumps({"user": "app", "port": 5432})),
           "BIN": base64.b64encode(kms.encrypt(KeyId="alias/aws/lambda",
                                               Plaintext=b"\xff\x00\x01" * 20)["CiphertextBlob"]).decode()}
    s = EnvSecrets(kms=kms, environ=env)
    assert s.get("CFG", transform="json") == {"user": "app", "port": 5432}
    assert s.get("BIN", transform="binary") == b"\xff\x00\x01" * 20
    with pytest.raises(errors.TransformError) as e:
        s.get("BIN")
    assert "BIN" in str(e.value) and "binary" in str(e.value)
    with pytest.raises(ValueError):
        s.get("CFG", transform="yaml")


def test_json_transform_error_does_not_leak(kms):
    s = EnvSecrets(kms=kms, environ={"CFG": cli_value(kms, "{not json " + SECRET)})
    with pytest.raises(errors.TransformError) as e:
        s.get("CFG", transform="json")
    assert_clean(e.value, SECRET)


# --- caching --------------------------------------------------------------------------

def test_cache_max_age_and_force_fetch(counting, kms):
    now = [1000.0]
    env = {"A": cli_value(kms)}
    s = EnvSecrets(kms=counting, environ=env, max_age=60, clock=lambda: now[0])
    assert s.get("A") == SECRET and s.get("A") == SECRET
    assert counting.calls == ["decrypt"]
    assert s.get("A", transform="binary") == SECRET.encode()  # same cache entry
    assert len(counting.calls) == 1
    now[0] += 59
    s.get("A")
    assert len(counting.calls) == 1
    now[0] += 2
    s.get("A")
    assert len(counting.calls) == 2  # expired
    s.get("A", force_fetch=True)
    assert len(counting.calls) == 3
    s.get("A", max_age=0)
    assert len(counting.calls) == 4


def test_changed_ciphertext_is_not_served_from_cache(counting, kms):
    env = {"A": cli_value(kms, "first-value-xx")}
    s = EnvSecrets(kms=counting, environ=env)
    assert s.get("A") == "first-value-xx"
    env["A"] = cli_value(kms, "second-value-yy")
    assert s.get("A") == "second-value-yy"


def test_default_max_age_is_300_and_env_override(monkeypatch, kms):
    assert EnvSecrets(kms=kms).max_age == 300.0
    monkeypatch.setenv("KMS_ENV_MAX_AGE", "5")
    assert EnvSecrets(kms=kms).max_age == 5.0


def test_refresh_and_clear(counting, kms):
    env = {"A": cli_value(kms), "B": cli_value(kms, "bbbbbbbb")}
    s = EnvSecrets(kms=counting, environ=env)
    s.get_many(["A", "B"])
    assert len(counting.calls) == 2
    assert sorted(s.refresh()) == ["A", "B"]
    assert len(counting.calls) == 4
    s.clear_cache()
    s.get("A")
    assert len(counting.calls) == 5


# --- many at once -------------------------------------------------------------------

def test_decrypt_environ_into_environ_and_back(counting, kms):
    a, b = cli_value(kms, "alpha-secret"), cli_value(kms, "beta-secret")
    env = {"A": a, "B": b, "OTHER": "untouched"}
    s = EnvSecrets(kms=counting, environ=env)
    out = s.decrypt_environ(["A", "B"])
    assert out == {"A": "alpha-secret", "B": "beta-secret"}
    assert env == {"A": "alpha-secret", "B": "beta-secret", "OTHER": "untouched"}
    # Still decryptable (from the remembered ciphertext) after the swap:
    assert s.get("A", force_fetch=True) == "alpha-secret"
    s.refresh()
    assert env["B"] == "beta-secret"
    # A new ciphertext put in the environment wins over the remembered one.
    env["A"] = cli_value(kms, "alpha-rotated")
    assert s.get("A") == "alpha-rotated"


def test_nul_cannot_go_into_environ(kms):
    s = EnvSecrets(kms=kms, environ={"N": cli_value(kms, "a\x00b-secret")})
    with pytest.raises(errors.TransformError) as e:
        s.decrypt_environ(["N"])
    assert "N" in str(e.value) and "a\x00b" not in str(e.value)
    assert s.get("N", transform="binary") == b"a\x00b-secret"


def test_decrypt_environ_mapping_only(kms):
    env = {"A": cli_value(kms)}
    out = EnvSecrets(kms=kms, environ=env).decrypt_environ(["A"], into_environ=False)
    assert out == {"A": SECRET} and env["A"] != SECRET


def test_get_many_concurrent_reports_first_error_in_order(kms):
    env = {"A": cli_value(kms), "C": "hunter2"}
    s = EnvSecrets(kms=kms, environ=env)
    with pytest.raises(errors.MissingSecretError):
        s.get_many(["A", "B", "C"])
    with pytest.raises(errors.NotCiphertextError) as e:
        s.get_many(["A", "C"])
    assert e.value.variable == "C"
    assert s.get("A") == SECRET


def test_many_variables_concurrently(kms):
    env = {f"V{i}": cli_value(kms, f"value-number-{i}") for i in range(20)}
    s = EnvSecrets(kms=kms, environ=env)
    assert s.remote  # a handed-in client is treated as remote: threads
    assert s.get_many(env) == {f"V{i}": f"value-number-{i}" for i in range(20)}


def test_run_all_keeps_order_and_errors():
    def f(x):
        if x == 3:
            raise KeyError(x)
        return x * 2
    out = core.run_all(f, list(range(8)), concurrent=True, max_workers=3)
    assert [r for r, _ in out] == [0, 2, 4, None, 8, 10, 12, 14]
    assert isinstance(out[3][1], KeyError)


# --- handler decorator and module-level API ---------------------------------------------

def test_handler_decorator_into_environ(kms, monkeypatch):
    monkeypatch.setenv("DB_PASSWORD", cli_value(kms))
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders-api")
    monkeypatch.setenv("API_TOKEN", console_value(kms, "tok-123456789"))
    core.configure(kms=kms)
    import os

    @core.with_secrets("DB_PASSWORD", "API_TOKEN")
    def handler(event, context):
        return os.environ["DB_PASSWORD"], os.environ["API_TOKEN"], event

    assert handler({"x": 1}, None) == (SECRET, "tok-123456789", {"x": 1})
    assert handler({"x": 2}, None)[2] == {"x": 2}  # second call: from cache


def test_handler_decorator_as_argument(kms):
    s = EnvSecrets(kms=kms, environ={"A": cli_value(kms)})

    @s.handler("A", into_environ=False)
    def handler(event, context, secrets):
        return secrets["A"]

    assert handler({}, None) == SECRET


def test_module_get_secret_uses_embedded_default(kms_home, monkeypatch):
    import kms_core
    value = cli_value(kms_core.client())
    monkeypatch.setenv("DB_PASSWORD", value)
    assert core.get_secret("DB_PASSWORD") == SECRET
    assert core.get_secrets(["DB_PASSWORD"]) == {"DB_PASSWORD": SECRET}
    assert core._provider().remote is False
    core.clear_caches()
    assert core.refresh() == []


def test_resolve_client_order(monkeypatch, kms_home):
    from integrations.lambda_env.remote import LightKMSClient
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:9")
    client, remote = core.resolve_client()
    assert isinstance(client, LightKMSClient) and remote and client.endpoint_url == "http://127.0.0.1:9"
    client, _ = core.resolve_client("https://kms.example:8443")
    assert client.endpoint_url == "https://kms.example:8443"
    monkeypatch.delenv("AWS_ENDPOINT_URL_KMS")
    monkeypatch.setenv("AWS_EXECUTION_ENV", "AWS_Lambda_python3.12")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    monkeypatch.delenv("KMS_HOME")
    client, remote = core.resolve_client()
    assert client.endpoint_url == "https://kms.eu-central-1.amazonaws.com" and remote
    monkeypatch.setenv("KMS_HOME", str(kms_home))  # an embedded store configured: use it
    client, remote = core.resolve_client()
    assert not remote and not isinstance(client, LightKMSClient)


def test_register_after_restore_without_snapstart():
    assert core.register_after_restore() is False


# --- no secret in logs or reprs -------------------------------------------------------------

def test_no_secret_in_logs_or_reprs(kms, caplog):
    caplog.set_level(logging.DEBUG)
    env = {"AWS_LAMBDA_FUNCTION_NAME": "orders-api", "DB_PASSWORD": console_value(kms),
           "CFG": cli_value(kms, '{"token": "' + SECRET + '"}')}
    s = EnvSecrets(kms=kms, environ=env)
    s.get("DB_PASSWORD")
    s.get("CFG", transform="json")
    s.decrypt_environ(["DB_PASSWORD"], into_environ=False)
    with pytest.raises(errors.WrongContextError):
        EnvSecrets(kms=kms, environ={"X": console_value(kms)}).get("X")
    assert any("DB_PASSWORD" in r.getMessage() for r in caplog.records)  # logging happened
    for record in caplog.records:
        text = record.getMessage() + str(record.args)
        assert SECRET not in text and env["DB_PASSWORD"] not in text
    for obj in (s, s._cache["DB_PASSWORD"]):
        assert SECRET not in repr(obj) and "DB_PASSWORD=" not in repr(obj)
