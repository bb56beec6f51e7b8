"""``kms audit verify|tail|anchor`` driven through the ``kms`` entry point."""
from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import update

from kms_core.audit import audit_events
from kms_core.cli import main as kms_main

from .conftest import ALICE, BOB


def run(capsys, *argv) -> tuple[int, str, str]:
    code = kms_main(["audit", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def history(engine, audit, make_client, clock):
    """A small history: two keys, two users, successes and failures over three days."""
    alice, bob, root = make_client(principal=ALICE), make_client(principal=BOB), make_client()
    k1 = root.create_key(Description="one")["KeyMetadata"]
    k2 = root.create_key(Description="two")["KeyMetadata"]
    root.create_alias(AliasName="alias/two", TargetKeyId=k2["KeyId"])
    clock.advance(days=1)
    alice.encrypt(KeyId=k1["KeyId"], Plaintext=b"alice-data-000001")
    bob.encrypt(KeyId="alias/two", Plaintext=b"bob-data-00000001")
    clock.advance(days=1)
    root.disable_key(KeyId=k2["KeyId"])
    with pytest.raises(bob.exceptions.DisabledException):
        bob.encrypt(KeyId=k2["KeyId"], Plaintext=b"bob-data-00000002")
    audit.flush()
    return {"k1": k1, "k2": k2, "url": engine.store.url}


def lines(out):
    return [json.loads(x) for x in out.splitlines()]


def test_tail_json_lines_and_count(capsys, history):
    code, out, err = run(capsys, "tail", "--store-url", history["url"])
    assert code == 0 and err == ""
    events = lines(out)
    assert [e["eventName"] for e in events] == ["CreateKey", "CreateKey", "CreateAlias", "Encrypt",
                                                "Encrypt", "DisableKey", "Encrypt"]
    code, out, _ = run(capsys, "tail", "-n", "2", "--store-url", history["url"])
    assert [e["eventName"] for e in lines(out)] == ["DisableKey", "Encrypt"]


@pytest.mark.parametrize("args,expect", [
    (["--key", "K1"], ["CreateKey", "Encrypt"]),
    (["--key", "ARN2"], ["CreateKey", "CreateAlias", "Encrypt", "DisableKey", "Encrypt"]),
    (["--key", "alias/two"], ["CreateKey", "CreateAlias", "Encrypt", "DisableKey", "Encrypt"]),
    (["--principal", "bob"], ["Encrypt", "Encrypt"]),
    (["--principal", ALICE], ["Encrypt"]),
    (["--principal", "root"], ["CreateKey", "CreateKey", "CreateAlias", "DisableKey"]),
    (["--operation", "Encrypt"], ["Encrypt", "Encrypt", "Encrypt"]),
    (["--operation", "CreateAlias,DisableKey"], ["CreateAlias", "DisableKey"]),
    (["--errors-only"], ["Encrypt"]),
    (["--start-time", "2026-01-02T00:00:00Z", "--end-time", "2026-01-02T23:59:59Z"], ["Encrypt", "Encrypt"]),
    (["--start-time", "2026-01-03"], ["DisableKey", "Encrypt"]),
    (["--principal", "bob", "--errors-only"], ["Encrypt"]),
    (["--key", "00000000-0000-4000-8000-000000000000"], []),
])
def test_tail_filters(capsys, history, args, expect):
    args = [a.replace("K1", history["k1"]["KeyId"]).replace("ARN2", history["k2"]["Arn"]) for a in args]
    code, out, err = run(capsys, "tail", "--all", "--store-url", history["url"], *args)
    assert code == 0, err
    assert [e["eventName"] for e in lines(out)] == expect


def test_tail_text_form(capsys, history):
    code, out, _ = run(capsys, "tail", "-n", "1", "--output", "text", "--store-url", history["url"])
    assert code == 0
    line = out.strip()
    assert line.startswith("2026-01-03T00:00:00Z")
    assert "Encrypt" in line and "DisabledException" in line and "bob" in line
    assert "key/" + history["k2"]["KeyId"] in line


def test_tail_follow_prints_new_events(capsys, history, make_client, audit):
    kms = make_client()
    got: dict = {}

    def follow():
        got["code"] = kms_main(["audit", "tail", "-n", "0", "--follow", "--interval", "0.05",
                                "--timeout", "3", "--store-url", history["url"]])

    t = threading.Thread(target=follow)
    t.start()
    time.sleep(0.5)
    kms.list_keys()
    kms.list_aliases()
    audit.flush()
    t.join(10)
    out, _ = capsys.readouterr()
    assert got["code"] == 0
    assert [e["eventName"] for e in lines(out)] == ["ListKeys", "ListAliases"]


def test_verify_ok_anchor_and_tampered(capsys, history, engine):
    code, out, _ = run(capsys, "verify", "--store-url", history["url"])
    assert code == 0 and out.startswith("OK: 7 records verified")
    code, anchor, _ = run(capsys, "anchor", "--store-url", history["url"])
    assert code == 0 and anchor.strip() in out
    code, out, _ = run(capsys, "verify", "--anchor", anchor.strip(), "--store-url", history["url"])
    assert code == 0
    with engine.store.engine.begin() as c:
        c.execute(update(audit_events).where(audit_events.c.seq == 5)
                  .values(event=audit_events.c.event + " "))
    code, out, _ = run(capsys, "verify", "--store-url", history["url"])
    assert code == 1
    assert "TAMPERED: record 5 " in out and "FAILED: 1 problem(s) in 7 records" in out
    code, out, _ = run(capsys, "verify", "--output", "json", "--store-url", history["url"])
    rep = json.loads(out)
    assert code == 1 and rep["ok"] is False and rep["problems"][0]["record"] == 5


@pytest.mark.parametrize("argv", [
    [], ["frobnicate"], ["tail", "-n", "x"], ["tail", "--start-time", "yesterday"],
    ["tail", "-n", "-1"], ["verify", "--anchor", "12:zz"], ["tail", "--output", "yaml"],
])
def test_bad_command_lines_exit_2_without_traceback(capsys, kms_home, argv):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert "Traceback" not in out + err
    assert err.strip() or out.strip()


def test_unreachable_store_is_one_line_and_255(capsys, kms_home):
    code, _, err = run(capsys, "verify", "--store-url", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert code == 255 and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_principal_filter_takes_underscores_literally(capsys, engine, audit, make_client):
    make_client(principal="arn:aws:iam::111122223333:user/svc_app").list_keys()
    make_client(principal="arn:aws:iam::111122223333:user/svcXapp").list_aliases()
    audit.flush()
    code, out, _ = run(capsys, "tail", "--principal", "svc_app", "--store-url", engine.store.url)
    assert code == 0 and [e["eventName"] for e in lines(out)] == ["ListKeys"]
