"""The console's security properties, driven in-process through the server's ASGI app."""
from __future__ import annotations

import base64
import re

import pytest

from kms_core.console import sessions as sessions_mod

from .conftest import csrf_of, sign_in

PLAINTEXT = "correct horse battery staple 7f3a"


def _key(console_app) -> str:
    return console_app.engine.call("CreateKey", {"Description": "t"})["KeyMetadata"]["KeyId"]


def test_session_cookie_flags_and_security_headers(web, access_key):
    page = web.get("/console/signin")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "http" not in csp  # no third-party or CDN origin
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    r = web.post("/console/signin", data={"csrf_token": csrf_of(page.text), "access_key_id": access_key["AccessKeyId"],
                                          "secret_access_key": access_key["SecretAccessKey"]})
    assert r.status_code == 303
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("kms_console_session="))
    flags = {f.strip().lower() for f in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/console"} <= flags
    # Every page carries the CSP, including errors and static assets.
    for path in ("/console/keys", "/console/nope", "/console/static/console.css"):
        assert "default-src 'none'" in web.get(path).headers["content-security-policy"], path


def test_pages_need_a_session(web):
    for path in ("/console/keys", "/console/aws-keys", "/console/audit", "/console/create", "/console/keys/x"):
        r = web.get(path)
        assert r.status_code == 303 and r.headers["location"].endswith("/console/signin"), path


def test_wrong_secret_is_refused(web, access_key):
    page = web.get("/console/signin")
    r = web.post("/console/signin", data={"csrf_token": csrf_of(page.text), "access_key_id": access_key["AccessKeyId"],
                                          "secret_access_key": access_key["SecretAccessKey"][:-1] + "x"})
    assert r.status_code == 401 and "UnrecognizedClientException" in r.text
    assert "kms_console_session" not in r.headers.get("set-cookie", "")
    # Development sign-in exists only under --dev-credentials.
    page = web.get("/console/signin")
    assert "development only" not in page.text
    r = web.post("/console/signin", data={"csrf_token": csrf_of(page.text), "mode": "dev"})
    assert r.status_code == 403


def test_no_state_change_without_a_valid_csrf_token(web, access_key, console_app):
    csrf = sign_in(web, access_key)
    key_id = _key(console_app)
    url = f"/console/keys/{key_id}/action"
    for data in ({"action": "disable"}, {"action": "disable", "csrf_token": ""},
                 {"action": "disable", "csrf_token": csrf[:-2] + "xx"}):
        r = web.post(url, data=data)
        assert r.status_code == 403, data
    meta = console_app.engine.call("DescribeKey", {"KeyId": key_id})["KeyMetadata"]
    assert meta["KeyState"] == "Enabled"
    # A valid token from another site's page is refused by the Origin check.
    r = web.post(url, data={"action": "disable", "csrf_token": csrf}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    # The wizard, the crypto panel and sign-out are protected too.
    assert web.post("/console/create", data={"step": "1"}).status_code == 403
    assert web.post(f"/console/keys/{key_id}/use", data={"op": "encrypt", "plaintext": "x"}).status_code == 403
    assert web.post("/console/signout", data={}).status_code == 403
    # The same request with the token works.
    r = web.post(url, data={"action": "disable", "csrf_token": csrf, "tab": "config"})
    assert r.status_code == 303
    meta = console_app.engine.call("DescribeKey", {"KeyId": key_id})["KeyMetadata"]
    assert meta["KeyState"] == "Disabled"
    # Sign-in needs the pre-session token as well (login CSRF).
    r = web.post("/console/signin", data={"access_key_id": access_key["AccessKeyId"],
                                          "secret_access_key": access_key["SecretAccessKey"]})
    assert r.status_code == 403


def test_session_fixation_sign_out_and_expiry(web, access_key, console_app, monkeypatch):
    planted = "attacker-chosen-session-token"
    web.cookies.set("kms_console_session", planted, domain="kms.test", path="/console")
    page = web.get("/console/signin")
    r = web.post("/console/signin", data={"csrf_token": csrf_of(page.text), "access_key_id": access_key["AccessKeyId"],
                                          "secret_access_key": access_key["SecretAccessKey"]})
    token = re.search(r"kms_console_session=([^;]+)", r.headers["set-cookie"]).group(1)
    assert token != planted and len(token) >= 40
    # A second sign-in replaces the session: the first token no longer works.
    page = web.get("/console/signin")
    r = web.post("/console/signin", data={"csrf_token": csrf_of(page.text), "access_key_id": access_key["AccessKeyId"],
                                          "secret_access_key": access_key["SecretAccessKey"]})
    token2 = re.search(r"kms_console_session=([^;]+)", r.headers["set-cookie"]).group(1)
    assert token2 != token
    web.cookies.clear()
    web.cookies.set("kms_console_session", token, domain="kms.test", path="/console")
    assert web.get("/console/keys").status_code == 303
    web.cookies.set("kms_console_session", token2, domain="kms.test", path="/console")
    keys = web.get("/console/keys")
    assert keys.status_code == 200
    # The database holds only the token's hash.
    with console_app.engine.store.reading() as conn:
        stored = [r.token_hash for r in conn.execute(sessions_mod.console_sessions.select())]
    assert token2 not in stored and len(stored) == 1
    # Sign-out ends the session on the server, not only in the browser.
    r = web.post("/console/signout", data={"csrf_token": csrf_of(keys.text)})
    assert r.status_code == 303
    web.cookies.set("kms_console_session", token2, domain="kms.test", path="/console")
    assert web.get("/console/keys").status_code == 303
    # Idle expiry.
    csrf = sign_in(web, access_key)
    assert csrf
    real = sessions_mod.time.time
    monkeypatch.setattr(sessions_mod.time, "time", lambda: real() + sessions_mod.IDLE + 5)
    web.app.console.sessions.clock = sessions_mod.time.time
    assert web.get("/console/keys").status_code == 303


def test_plaintext_only_in_the_decrypt_answer(web, access_key, console_app, caplog):
    caplog.set_level("DEBUG")
    csrf = sign_in(web, access_key)
    key_id = _key(console_app)
    bodies = []
    r = web.post(f"/console/keys/{key_id}/use", data={"csrf_token": csrf, "op": "encrypt", "plaintext": PLAINTEXT,
                                                      "context": "app=test"})
    assert r.status_code == 200
    bodies.append(r.text)
    ct = re.search(r'id="result-ct"[^>]*>([^<]+)<', r.text).group(1).strip()
    assert console_app.engine.call("Decrypt", {"CiphertextBlob": base64.b64decode(ct),
                                               "EncryptionContext": {"app": "test"}})["Plaintext"] == PLAINTEXT.encode()
    r = web.post(f"/console/keys/{key_id}/use", data={"csrf_token": csrf, "op": "datakey", "spec": "AES_256"})
    bodies.append(r.text)
    assert "result-ct" in r.text
    shown = web.post(f"/console/keys/{key_id}/use", data={"csrf_token": csrf, "op": "decrypt", "ciphertext": ct,
                                                          "context": "app=test"})
    assert shown.status_code == 200 and PLAINTEXT in shown.text  # the one response that shows it
    assert shown.headers["cache-control"] == "no-store"
    # A wrong context: AWS's error in the page, no plaintext.
    r = web.post(f"/console/keys/{key_id}/use", data={"csrf_token": csrf, "op": "decrypt", "ciphertext": ct})
    assert "InvalidCiphertextException" in r.text
    bodies.append(r.text)
    console_app.audit_log.flush()
    for tab in ("config", "use", "events", "policy", "grants"):
        bodies.append(web.get(f"/console/keys/{key_id}?tab={tab}").text)
    bodies.append(web.get("/console/audit").text)
    bodies.append(web.get("/console/keys").text)
    assert "Encrypt" in bodies[-2] and "Decrypt" in bodies[-2]
    for body in bodies:
        assert PLAINTEXT not in body
        assert base64.b64encode(PLAINTEXT.encode()).decode()[:20] not in body
    assert PLAINTEXT not in caplog.text
    from kms_core.audit import AuditReader
    assert not any(PLAINTEXT in text for _, text in AuditReader(console_app.engine.store).events())


def test_actions_go_through_the_engine_as_the_principal(web, access_key, console_app):
    """The audit trail names the signed-in user; a policy that does not allow them refuses."""
    csrf = sign_in(web, access_key)
    engine = console_app.engine
    key_id = engine.call("CreateKey", {
        "Policy": '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":'
                  '"arn:aws:iam::111122223333:user/bob"},"Action":"kms:*","Resource":"*"}]}',
        "BypassPolicyLockoutSafetyCheck": True})["KeyMetadata"]["KeyId"]
    r = web.post(f"/console/keys/{key_id}/action", data={"csrf_token": csrf, "action": "disable", "tab": "config"})
    assert r.status_code == 303
    page = web.get(r.headers["location"])
    assert page.status_code == 400 and "AccessDeniedException" in page.text  # DescribeKey refused too (AWS: 400)
    console_app.audit_log.flush()
    from kms_core.audit import AuditReader
    events = [e for _, e in AuditReader(engine.store).events(operation="DisableKey")]
    assert events and '"arn:aws:iam::111122223333:user/alice"' in events[-1]
    assert '"errorCode":"AccessDeniedException"' in events[-1]


@pytest.mark.parametrize("path", ["/console/keys/../../etc/passwd", "/console/static/../web.py"])
def test_no_path_tricks(web, path):
    assert web.get(path).status_code in (303, 404)


def test_dev_credentials_mode_is_explicit(engine):
    from starlette.testclient import TestClient

    from kms_core.server.app import KMSApp, ServerConfig

    app = KMSApp(ServerConfig(dev_credentials=True), engine=engine)
    try:
        with TestClient(app, base_url="https://kms.test", follow_redirects=False) as web:
            page = web.get("/console/signin")
            assert "Local development mode" in page.text and "LOCAL DEVELOPMENT MODE" in page.text
            r = web.post("/console/signin", data={"csrf_token": csrf_of(page.text), "mode": "dev"})
            assert r.status_code == 303
            keys = web.get("/console/keys")
            assert "arn:aws:iam::111122223333:root" in keys.text and "LOCAL DEVELOPMENT MODE" in keys.text
    finally:
        app.audit_log.close()


def test_console_can_be_turned_off(engine):
    from starlette.testclient import TestClient

    from kms_core.server.app import KMSApp, ServerConfig

    app = KMSApp(ServerConfig(console=False, audit=False), engine=engine)
    with TestClient(app, base_url="https://kms.test", follow_redirects=False) as web:
        r = web.get("/console/signin")
        assert r.status_code == 404 and "UnknownOperationException" in r.text
