"""Our SigV4 signer against botocore's SigV4Auth on the same inputs."""
from __future__ import annotations

import datetime as dt
from unittest import mock

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.lambda_env import sigv4

_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/+=",
                 min_size=1, max_size=40)
_header_value = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e),
                        min_size=0, max_size=30)
_header_name = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).filter(
    lambda n: n.strip("-") and n not in ("host", "authorization", "x-amz-date",
                                         "x-amz-security-token", "x-amz-content-sha256"))
_segment = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x2fff,
                                          blacklist_characters="/?#%"), min_size=1, max_size=8)
_path = st.lists(_segment, max_size=3).map(lambda parts: "/" + "/".join(parts))
_query = st.lists(st.tuples(st.text("abcXYZ019-_.~", min_size=1, max_size=5),
                            st.text("abcXYZ019-_.~", max_size=5)), max_size=3).map(
    lambda pairs: "&".join(f"{k}={v}" for k, v in pairs))


def botocore_sign(method, url, headers, body, creds, region, service, when):
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    boto_creds = BotoCredentials(creds.access_key, creds.secret_key, creds.token)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
        botocore.auth.SigV4Auth(boto_creds, service, region).add_auth(request)
    return dict(request.headers.items())


@settings(max_examples=150, deadline=None)
@given(
    access=_token, secret=_token, token=st.one_of(st.none(), _token),
    region=st.sampled_from(["us-east-1", "eu-west-1", "ap-southeast-2", "us-gov-west-1"]),
    service=st.sampled_from(["kms", "sts", "s3"]),
    host=st.sampled_from(["127.0.0.1:8080", "localhost", "kms.eu-west-1.amazonaws.com",
                          "[::1]:9000", "example.com:443"]),
    scheme=st.sampled_from(["http", "https"]),
    path=_path, query=_query,
    extra=st.dictionaries(_header_name, _header_value, max_size=4),
    body=st.binary(max_size=200),
    when=st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31)),
)
def test_signature_matches_botocore(access, secret, token, region, service, host, scheme,
                                    path, query, extra, body, when):
    url = f"{scheme}://{host}{path}" + (f"?{query}" if query else "")
    headers = {"Content-Type": "application/x-amz-json-1.1",
               "X-Amz-Target": "TrentService.Decrypt", "User-Agent": "x/1", **extra}
    creds = sigv4.Credentials(access, secret, token)
    ours = sigv4.sign("POST", url, headers, body, credentials=creds, region=region,
                      service=service, timestamp=when.strftime("%Y%m%dT%H%M%SZ"))
    theirs = botocore_sign("POST", url, headers, body, creds, region, service, when)
    assert ours["Authorization"] == theirs["Authorization"]
    assert ours["X-Amz-Date"] == theirs["X-Amz-Date"]
    assert ours.get("X-Amz-Security-Token") == theirs.get("X-Amz-Security-Token")


def test_aws_test_suite_get_vanilla():
    # "get-vanilla" from AWS's published SigV4 test suite.
    creds = sigv4.Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    out = sigv4.sign("GET", "https://example.amazonaws.com/", {}, b"", credentials=creds,
                     region="us-east-1", service="service", timestamp="20150830T123600Z")
    assert out["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")


def test_signature_changes_with_every_input():
    creds = sigv4.Credentials("AKID", "secret")
    base = dict(credentials=creds, region="us-east-1", service="kms", timestamp="20260101T000000Z")
    ref = sigv4.sign("POST", "http://h/", {"X-Amz-Target": "A"}, b"{}", **base)["Authorization"]
    variants = [
        sigv4.sign("POST", "http://h/", {"X-Amz-Target": "A"}, b"{ }", **base),
        sigv4.sign("POST", "http://h/", {"X-Amz-Target": "B"}, b"{}", **base),
        sigv4.sign("POST", "http://h:81/", {"X-Amz-Target": "A"}, b"{}", **base),
        sigv4.sign("POST", "http://h/", {"X-Amz-Target": "A"}, b"{}",
                   **{**base, "region": "eu-west-1"}),
        sigv4.sign("POST", "http://h/", {"X-Amz-Target": "A"}, b"{}",
                   **{**base, "credentials": sigv4.Credentials("AKID", "secreT")}),
    ]
    assert all(v["Authorization"] != ref for v in variants)


def test_credentials_repr_hides_secret():
    creds = sigv4.Credentials("AKIDX", "very-secret-key", "session-token-value")
    assert "very-secret-key" not in repr(creds)
    assert "session-token-value" not in repr(creds)
