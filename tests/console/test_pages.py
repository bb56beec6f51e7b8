"""Console pages in-process: list paging/search/sort, AWS-managed keys read-only, audit alarm,
the wizard's policy, import parameters, errors in the page."""
from __future__ import annotations

import html
import json
import re

from sqlalchemy import update

from kms_core.audit import audit_events

from .conftest import sign_in

ALICE = "arn:aws:iam::111122223333:user/alice"


def _rows(page: str) -> list[str]:
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r'class="mono nowrap"><a href="/console/keys/([0-9a-f-]+)"', body)


def test_list_search_sort_and_pages(web, access_key, console_app):
    sign_in(web, access_key)
    engine = console_app.engine
    ids = []
    for i in range(30):
        kid = engine.call("CreateKey", {})["KeyMetadata"]["KeyId"]
        ids.append(kid)
        engine.call("CreateAlias", {"AliasName": f"alias/svc-{i:02d}", "TargetKeyId": kid})
    engine.call("Encrypt", {"KeyId": "alias/aws/s3", "Plaintext": b"x"})  # makes an AWS managed key
    page1 = web.get("/console/keys?size=10&refresh=1")  # the list is cached for a few seconds
    assert "(30)" in page1.text and "Page 1 of 3" in page1.text
    assert _rows(page1.text) == [ids[i] for i in range(10)]  # by alias, ascending
    page3 = web.get("/console/keys?size=10&page=3")
    assert _rows(page3.text) == [ids[i] for i in range(20, 30)]
    desc = web.get("/console/keys?size=10&order=desc")
    assert _rows(desc.text)[0] == ids[29]
    by_id = web.get("/console/keys?size=100&sort=keyid")
    assert _rows(by_id.text) == sorted(ids)
    found = web.get("/console/keys?q=SVC-07")
    assert _rows(found.text) == [ids[7]] and "(1)" in found.text
    assert _rows(web.get(f"/console/keys?q={ids[3][:13]}").text) == [ids[3]]
    assert "No keys match" in web.get("/console/keys?q=nothing-like-this").text
    # AWS managed keys are listed apart, and their page offers no changes.
    aws = web.get("/console/aws-keys")
    assert "alias/aws/s3" in aws.text and "svc-" not in aws.text
    managed = _rows(aws.text)[0]
    detail = web.get(f"/console/keys/{managed}")
    assert "AWS managed key" in detail.text and 'value="disable"' not in detail.text
    assert "Schedule deletion" not in detail.text
    # Bad paging input is clamped, never an error.
    assert web.get("/console/keys?page=-3&size=abc").status_code == 200


def test_wizard_policy_is_the_console_policy(web, access_key, console_app):
    csrf = sign_in(web, access_key)
    state = json.dumps({"key_spec": "SYMMETRIC_DEFAULT", "key_usage": "ENCRYPT_DECRYPT", "origin": "EXTERNAL",
                        "alias": "imp", "admins": [ALICE], "users": [ALICE], "admin_delete": "no",
                        "account_access": "no", "tags": []})
    r = web.post("/console/create", data={"csrf_token": csrf, "step": "3", "state": state, "users": ALICE})
    assert r.status_code == 200
    policy = json.loads(html.unescape(re.search(r'<textarea id="policy"[^>]*>([^<]*)</textarea>', r.text).group(1)))
    sids = [s["Sid"] for s in policy["Statement"]]
    assert sids == ["Allow access for Key Administrators", "Allow use of the key",
                    "Allow attachment of persistent resources"]
    admin = policy["Statement"][0]["Action"]
    assert "kms:ImportKeyMaterial" in admin and "kms:ScheduleKeyDeletion" not in admin
    # A broken policy: the error in place, nothing created.
    state2 = html.unescape(re.search(r'name="state" value="([^"]*)"', r.text).group(1))
    bad = web.post("/console/create", data={"csrf_token": csrf, "step": "4", "state": state2, "policy": "{nope"})
    assert bad.status_code == 400 and "MalformedPolicyDocumentException" in bad.text and "line 1" in bad.text
    assert console_app.engine.call("ListKeys", {})["Keys"] == []
    # The engine's own verdict is shown too (a principal that is not an ARN).
    wrong = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "nobody"},
                                                                "Action": "kms:*", "Resource": "*"}]})
    bad = web.post("/console/create", data={"csrf_token": csrf, "step": "4", "state": state2, "policy": wrong})
    assert bad.status_code == 400 and "MalformedPolicyDocumentException" in bad.text
    ok = web.post("/console/create", data={"csrf_token": csrf, "step": "4", "state": state2,
                                           "policy": json.dumps(policy)})
    assert ok.status_code == 303 and ok.headers["location"].endswith("?tab=material")
    key_id = ok.headers["location"].split("/keys/")[1].split("?")[0]
    meta = console_app.engine.call("DescribeKey", {"KeyId": key_id})["KeyMetadata"]
    assert meta["Origin"] == "EXTERNAL" and meta["KeyState"] == "PendingImport"
    # Import parameters: the wrapping key and token are offered for download.
    page = web.get(ok.headers["location"])
    r = web.post(f"/console/keys/{key_id}/action", data={"csrf_token": csrf, "action": "import-params",
                                                         "tab": "material", "wrapping_spec": "RSA_2048",
                                                         "wrapping_algorithm": "RSAES_OAEP_SHA_256"})
    assert page.status_code == 200 and r.status_code == 200
    assert 'download="WrappingPublicKey.bin"' in r.text and 'download="ImportToken.bin"' in r.text


def test_audit_page_alarm_when_the_chain_fails(web, access_key, console_app):
    sign_in(web, access_key)
    console_app.engine.call("CreateKey", {})
    console_app.audit_log.flush()
    console = console_app.console
    ok = web.get("/console/audit")
    assert "Verified" in ok.text and "FAILED" not in ok.text
    with console_app.engine.store.engine.begin() as conn:
        conn.execute(update(audit_events).where(audit_events.c.seq == 1)
                     .values(event=audit_events.c.event + " "))
    console.backend._verified = None  # the page re-checks every 15 s; don't wait in a test
    bad = web.get("/console/audit")
    assert "Audit log verification FAILED" in bad.text and 'role="alert"' in bad.text
    assert "record 1" in bad.text


def test_audit_filters(web, access_key, console_app):
    csrf = sign_in(web, access_key)
    k1 = console_app.engine.call("CreateKey", {})["KeyMetadata"]["KeyId"]
    k2 = console_app.engine.call("CreateKey", {})["KeyMetadata"]["KeyId"]
    web.post(f"/console/keys/{k1}/action", data={"csrf_token": csrf, "action": "disable", "tab": "config"})
    web.post(f"/console/keys/{k2}/action", data={"csrf_token": csrf, "action": "tag-add", "tab": "tags",
                                                 "tag_key": "", "tag_value": "v"})  # refused by the engine
    by_key = web.get(f"/console/audit?key={k1}&operation=DisableKey").text
    assert "DisableKey" in by_key and k1 in by_key and k2 not in by_key.split("<tbody>")[1]
    errors = web.get("/console/audit?errors=1&principal=alice").text
    assert "TagResource" in errors and "ValidationException" in errors and "DisableKey</summary>" not in errors
    assert "No events match" in web.get("/console/audit?principal=nobody").text
    future = web.get("/console/audit?start=2999-01-01T00:00").text
    assert "No events match" in future
    assert "not a date" in web.get("/console/audit?start=yesterday").text


def test_audit_page_says_when_the_log_is_off(engine):
    from starlette.testclient import TestClient

    from kms_core.server.app import KMSApp, ServerConfig
    from kms_core.server.credentials import AccessKeys

    app = KMSApp(ServerConfig(audit=False), engine=engine)
    key = AccessKeys(engine.store, engine.settings.account_id).create("alice")["AccessKey"]
    with TestClient(app, base_url="https://kms.test", follow_redirects=False) as web:
        sign_in(web, key)
        assert "AuditLogOff" in web.get("/console/audit").text
