"""Automatic pagination: --max-items, --starting-token, --page-size, --no-paginate, text pages."""
from __future__ import annotations

import base64
import json

import pytest
from botocore.paginate import TokenDecoder

import kms_core


@pytest.fixture
def five_keys(cli):
    ids = [cli("create-key", "--query", "KeyMetadata.KeyId", "--output", "text").out.strip() for _ in range(5)]
    assert all(ids)
    return sorted(ids)


def test_auto_paginates_all_pages(cli, five_keys):
    res = cli("list-keys", "--page-size", "2")
    assert res.rc == 0
    body = res.json
    assert sorted(k["KeyId"] for k in body["Keys"]) == five_keys
    assert set(body) == {"Keys"}  # Truncated/NextMarker are folded away, as in the AWS CLI


def test_max_items_and_starting_token_walk_every_key_once(cli, five_keys):
    seen, token, rounds = [], None, 0
    while True:
        args = ["list-keys", "--max-items", "2", "--page-size", "3"]
        if token:
            args += ["--starting-token", token]
        body = cli(*args).json
        seen += [k["KeyId"] for k in body["Keys"]]
        token = body.get("NextToken")
        rounds += 1
        if not token:
            break
        # botocore can read our token, and it is botocore's format.
        decoded = TokenDecoder().decode(token)
        assert set(decoded) <= {"Marker", "boto_truncate_amount"}
    assert rounds == 3 and sorted(seen) == five_keys and len(seen) == 5


def test_next_token_is_identical_to_botocores_paginator(cli, five_keys, kms_home):
    ours = cli("list-keys", "--max-items", "3", "--page-size", "2").json
    paginator = kms_core.client().get_paginator("list_keys")
    theirs = paginator.paginate(PaginationConfig={"MaxItems": 3, "PageSize": 2}).build_full_result()
    assert ours["NextToken"] == theirs["NextToken"]
    assert [k["KeyId"] for k in ours["Keys"]] == [k["KeyId"] for k in theirs["Keys"]]
    ours2 = cli("list-keys", "--starting-token", ours["NextToken"], "--page-size", "2").json
    theirs2 = paginator.paginate(PaginationConfig={"StartingToken": theirs["NextToken"], "PageSize": 2}
                                 ).build_full_result()
    assert [k["KeyId"] for k in ours2["Keys"]] == [k["KeyId"] for k in theirs2["Keys"]]


def test_no_paginate_and_manual_marker_make_one_call(cli, five_keys):
    first = cli("list-keys", "--no-paginate", "--output", "json").json
    assert first["Truncated"] is False and len(first["Keys"]) == 5  # service default Limit is 100
    page = cli("list-keys", "--limit", "2").json
    assert len(page["Keys"]) == 2 and page["Truncated"] is True
    nxt = cli("list-keys", "--limit", "2", "--marker", page["NextMarker"]).json
    assert not {k["KeyId"] for k in nxt["Keys"]} & {k["KeyId"] for k in page["Keys"]}
    clash = cli("list-keys", "--no-paginate", "--max-items", "1")
    assert clash.rc == 255
    assert clash.err == "Cannot specify --no-paginate along with pagination arguments: --max-items\n"


def test_text_output_prints_each_page_then_next_token(cli, five_keys):
    res = cli("list-keys", "--output", "text", "--page-size", "2", "--max-items", "3")
    lines = res.out.splitlines()
    assert [l.split("\t")[0] for l in lines] == ["KEYS"] * 3 + ["NEXTTOKEN"]
    token = lines[-1].split("\t")[1]
    assert json.loads(base64.b64decode(token))["boto_truncate_amount"] == 1
    # The query applies to every page separately (AWS CLI v1 behaviour).
    ids = cli("list-keys", "--output", "text", "--page-size", "2", "--query", "Keys[].KeyId").out.splitlines()
    assert [len(l.split("\t")) for l in ids] == [2, 2, 1]


def test_bad_starting_token_is_a_clear_error(cli, five_keys):
    res = cli("list-keys", "--starting-token", "not-a-token")
    assert res.rc == 255 and res.err.startswith("An error occurred (InvalidMarkerException)")


def test_manual_paging_with_max_items_is_refused_like_awscli(cli, five_keys):
    res = cli("list-keys", "--limit", "2", "--max-items", "1")
    assert res.rc == 255
    assert res.err == "Cannot specify --no-paginate along with pagination arguments: --max-items\n"
