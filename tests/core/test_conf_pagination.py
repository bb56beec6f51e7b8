"""Pagination of every list operation: Limit/Marker -> NextMarker/Truncated,
bad markers, and boto3 paginators."""
from __future__ import annotations

import pytest


def _walk(call, item_key, limit, **kwargs):
    """Follow NextMarker to the end; returns (items, pages)."""
    items, pages, marker = [], 0, None
    while True:
        args = dict(kwargs, Limit=limit)
        if marker is not None:
            args["Marker"] = marker
        resp = call(**args)
        pages += 1
        assert len(resp[item_key]) <= limit
        items.extend(resp[item_key])
        if not resp["Truncated"]:
            assert "NextMarker" not in resp
            return items, pages
        assert isinstance(resp["NextMarker"], str) and resp["NextMarker"]
        marker = resp["NextMarker"]
        assert pages < 1000, "pagination does not end"


@pytest.fixture(scope="module")
def pop(shared_store):
    """One store, filled once and only read by the tests that use it: 101 keys
    (one more than ListKeys' default page), 8 aliases (two on the first key),
    11 tags and 5 rotations on the first key."""
    kms = shared_store.client
    keys = [kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(101)]
    aliases = [f"alias/page-{i}" for i in range(7)]
    for name, kid in zip(aliases, keys):
        kms.create_alias(AliasName=name, TargetKeyId=kid)
    kms.create_alias(AliasName="alias/page-extra", TargetKeyId=keys[0])
    aliases.append("alias/page-extra")
    tags = [{"TagKey": f"t{i:02d}", "TagValue": str(i)} for i in range(11)]
    kms.tag_resource(KeyId=keys[0], Tags=tags)
    for _ in range(5):
        kms.rotate_key_on_demand(KeyId=keys[0])
    return kms, keys, aliases, tags


@pytest.fixture
def populated(pop):
    return pop[1:]


@pytest.fixture
def pkms(pop):
    return pop[0]


@pytest.mark.parametrize("limit", [1, 7, 100, 101, 1000])
def test_list_keys_pages(pkms, populated, limit):
    keys, _, _ = populated
    items, pages = _walk(pkms.list_keys, "Keys", limit)
    ids = [k["KeyId"] for k in items]
    assert sorted(ids) == sorted(keys)
    assert pages == -(-len(keys) // limit)


@pytest.mark.parametrize("limit", [1, 3, 50])
def test_list_aliases_pages(pkms, populated, limit):
    _, aliases, _ = populated
    items, _ = _walk(pkms.list_aliases, "Aliases", limit)
    names = [a["AliasName"] for a in items]
    assert len(names) == len(set(names))
    assert set(aliases) <= set(names)
    assert all(n in aliases or n.startswith("alias/aws/") for n in names)


def test_list_aliases_pages_with_key_filter(pkms, populated):
    keys, aliases, _ = populated
    items, pages = _walk(pkms.list_aliases, "Aliases", 1, KeyId=keys[0])
    assert sorted(a["AliasName"] for a in items) == ["alias/page-0", "alias/page-extra"]
    assert pages == 2


@pytest.mark.parametrize("limit", [1, 4, 11, 50])
def test_list_resource_tags_pages(pkms, populated, limit):
    keys, _, tags = populated
    items, _ = _walk(pkms.list_resource_tags, "Tags", limit, KeyId=keys[0])
    assert sorted(items, key=lambda t: t["TagKey"]) == tags


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_list_key_rotations_pages(pkms, populated, limit):
    keys, _, _ = populated
    items, _ = _walk(pkms.list_key_rotations, "Rotations", limit, KeyId=keys[0])
    assert len(items) == 5
    assert len({r["KeyMaterialId"] for r in items}) == 5
    assert items == pkms.list_key_rotations(KeyId=keys[0])["Rotations"]


def test_default_limits(pkms, populated):
    keys, _, _ = populated
    # Defaults: ListAliases 50, ListResourceTags 50, ListKeyRotations 100 -> all fit;
    # ListKeys 100 -> 101 keys take two pages.
    assert pkms.list_aliases()["Truncated"] is False
    assert pkms.list_resource_tags(KeyId=keys[0])["Truncated"] is False
    assert pkms.list_key_rotations(KeyId=keys[0])["Truncated"] is False
    first = pkms.list_keys()
    assert len(first["Keys"]) == 100 and first["Truncated"] is True
    rest = pkms.list_keys(Marker=first["NextMarker"])
    assert len(rest["Keys"]) == 1 and rest["Truncated"] is False


def test_pages_are_stable_while_keys_are_added(kms):
    keys = [kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(7)]
    first = kms.list_keys(Limit=3)
    kms.create_key()
    seen = [k["KeyId"] for k in first["Keys"]]
    marker = first["NextMarker"]
    while marker:
        resp = kms.list_keys(Limit=3, Marker=marker)
        seen += [k["KeyId"] for k in resp["Keys"]]
        marker = resp.get("NextMarker")
    assert len(seen) == len(set(seen))
    assert set(keys) <= set(seen)


CALLS = {
    "ListKeys": lambda kms, kid, m: kms.list_keys(Marker=m),
    "ListAliases": lambda kms, kid, m: kms.list_aliases(Marker=m),
    "ListResourceTags": lambda kms, kid, m: kms.list_resource_tags(KeyId=kid, Marker=m),
    "ListKeyRotations": lambda kms, kid, m: kms.list_key_rotations(KeyId=kid, Marker=m),
}


@pytest.mark.parametrize("op", list(CALLS))
@pytest.mark.parametrize("marker", ["garbage", "AAAA", "x" * 1024, "bm90IGEgbWFya2Vy"],
                         ids=["garbage", "short-base64", "max-length", "base64-text"])
def test_bad_marker(raises_on, pkms, populated, op, marker):
    with raises_on(pkms, "InvalidMarkerException"):
        CALLS[op](pkms, populated[0][0], marker)


def test_marker_from_another_list_is_refused(raises_on, pkms, populated):
    keys, _, _ = populated
    tag_marker = pkms.list_resource_tags(KeyId=keys[0], Limit=1)["NextMarker"]
    rotation_marker = pkms.list_key_rotations(KeyId=keys[0], Limit=1)["NextMarker"]
    with raises_on(pkms, "InvalidMarkerException"):
        pkms.list_aliases(Marker=tag_marker)
    with raises_on(pkms, "InvalidMarkerException"):
        pkms.list_resource_tags(KeyId=keys[1], Marker=rotation_marker)


@pytest.mark.parametrize("op,item_key,kwargs", [
    ("list_keys", "Keys", {}),
    ("list_aliases", "Aliases", {}),
    ("list_resource_tags", "Tags", {"key": 0}),
    ("list_key_rotations", "Rotations", {"key": 0}),
])
def test_boto3_paginators(pkms, populated, op, item_key, kwargs):
    keys, aliases, tags = populated
    args = {"KeyId": keys[0]} if kwargs else {}
    paginator = pkms.get_paginator(op)
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 2}, **args))
    items = [i for p in pages for i in p[item_key]]
    assert len(pages) >= 2
    expected = {"list_keys": len(keys), "list_resource_tags": len(tags), "list_key_rotations": 5}
    if op in expected:
        assert len(items) == expected[op]
    else:
        assert set(aliases) <= {a["AliasName"] for a in items}
