"""Fixtures: the server's ASGI app (with the console mounted) on a fresh store, driven in-process."""
from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from kms_core.server.app import KMSApp, ServerConfig
from kms_core.server.credentials import AccessKeys

BASE = "https://kms.test"  # the session cookie is Secure: the test client must speak "https"


@pytest.fixture
def console_app(engine):
    app = KMSApp(ServerConfig(), engine=engine)
    yield app
    if app.audit_log is not None:
        app.audit_log.close()


@pytest.fixture
def access_key(console_app):
    return AccessKeys(console_app.engine.store, console_app.engine.settings.account_id).create("alice")["AccessKey"]


@pytest.fixture
def web(console_app):
    with TestClient(console_app, base_url=BASE, follow_redirects=False) as c:
        yield c


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def sign_in(client, key: dict) -> str:
    """Sign in; returns the session's CSRF token (from the keys page)."""
    page = client.get("/console/signin")
    r = client.post("/console/signin", data={"csrf_token": csrf_of(page.text), "access_key_id": key["AccessKeyId"],
                                             "secret_access_key": key["SecretAccessKey"]})
    assert r.status_code == 303, r.text
    keys = client.get("/console/keys")
    assert keys.status_code == 200
    return csrf_of(keys.text)
