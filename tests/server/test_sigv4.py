"""SigV4 verification: known answers from AWS's documentation and test suite,
and property-based agreement with botocore's signer."""
from __future__ import annotations

import calendar
import string
import time
from urllib.parse import quote

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kms_core.errors import KMSError
from kms_core.server import sigv4

EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def _ts(amz: str) -> float:
    return float(calendar.timegm(time.strptime(amz, "%Y%m%dT%H%M%SZ")))


# -- known answers -------------------------------------------------------------------

def test_signing_key_known_answer():
    # AWS General Reference, "Deriving the signing key" example.
    key = sigv4.derive_signing_key(EXAMPLE_SECRET, "20120215", "us-east-1", "iam")
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


GET_VANILLA = {
    "host": "example.amazonaws.com",
    "x-amz-date": "20150830T123600Z",
    "authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
    "SignedHeaders=host;x-amz-date, "
    "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
}


def _vanilla(headers=GET_VANILLA, method="GET", path="/", now=None):
    return sigv4.parse_request(method, path, "", dict(headers), b"", service="service",
                               now=_ts("20150830T123600Z") if now is None else now, required=("host",))


def test_aws_test_suite_get_vanilla():
    req = _vanilla()
    assert (req.access_key_id, req.region, req.date) == ("AKIDEXAMPLE", "us-east-1", "20150830")
    sigv4.SigningKeys().verify(req, EXAMPLE_SECRET)


def test_aws_test_suite_get_vanilla_wrong_secret_or_changed_request():
    with pytest.raises(KMSError) as e:
        sigv4.SigningKeys().verify(_vanilla(), EXAMPLE_SECRET[:-1] + "X")
    assert e.value.code == "InvalidSignatureException"
    assert e.value.message == sigv4.MSG_BAD_SIGNATURE
    for changed in (_vanilla(method="POST"), _vanilla(path="/x"),
                    _vanilla({**GET_VANILLA, "host": "example.amazonaws.com:444"})):
        with pytest.raises(KMSError) as e:
            sigv4.SigningKeys().verify(changed, EXAMPLE_SECRET)
        assert e.value.code == "InvalidSignatureException"


def test_repr_hides_signature_and_secret_material():
    req = _vanilla()
    assert "5fa00fa3" not in repr(req)
    keys = sigv4.SigningKeys()
    keys.verify(req, EXAMPLE_SECRET)
    assert EXAMPLE_SECRET not in repr(keys)


# -- agreement with botocore's signer --------------------------------------------------

_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
access_keys = st.text(_B32, min_size=16, max_size=16).map(lambda s: "AKIA" + s)
secrets_ = st.text(string.ascii_letters + string.digits + "+/", min_size=40, max_size=40)
regions = st.sampled_from(["us-east-1", "eu-west-1", "ap-southeast-2", "us-gov-west-1", "cn-north-1"])
header_names = st.text(string.ascii_lowercase + "-", min_size=1, max_size=12).filter(
    lambda n: n.strip("-") and n not in {"host", "authorization", "x-amz-date", "x-amz-target",
                                         "x-amz-security-token", "content-length", "x-amz-content-sha256",
                                         "date", "expect", "connection", "keep-alive", "te", "trailer",
                                         "transfer-encoding", "upgrade", "user-agent", "proxy-authenticate",
                                         "proxy-authorization", "x-amzn-trace-id"})
# Visible ASCII with inner runs of spaces: the canonical form collapses them.
header_values = st.text(string.ascii_letters + string.digits + " ;,=/:.-_", min_size=1, max_size=40).map(
    lambda v: "x" + v + "y")
query_params = st.lists(st.tuples(st.text(string.ascii_letters + "-_.~ &=%/", min_size=1, max_size=8),
                                  st.text(string.printable, max_size=8)), max_size=3)


def _sign(akid, secret, region, body, extra, params, token=None, path="/"):
    host = "127.0.0.1:4599"
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in params)
    url = f"http://{host}{path}" + (f"?{query}" if query else "")
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService.Encrypt"}
    headers.update(extra)
    req = AWSRequest(method="POST", url=url, data=body, headers=headers)
    SigV4Auth(Credentials(akid, secret, token), "kms", region).add_auth(req)
    # What the server sees: lower-case names, plus the Host header urllib3 sends.
    seen = {k.lower(): v for k, v in req.headers.items()}
    seen["host"] = host
    return seen, query


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(akid=access_keys, secret=secrets_, region=regions, body=st.binary(max_size=300),
       extra=st.dictionaries(header_names, header_values, max_size=4), params=query_params,
       token=st.one_of(st.none(), st.text(string.ascii_letters + string.digits + "/+=", min_size=1, max_size=60)))
def test_accepts_every_botocore_signature(akid, secret, region, body, extra, params, token):
    headers, query = _sign(akid, secret, region, body, extra, params, token)
    req = sigv4.parse_request("POST", "/", query, headers, body)
    assert (req.access_key_id, req.region, req.service) == (akid, region, "kms")
    assert req.security_token == token
    sigv4.SigningKeys().verify(req, secret)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(akid=access_keys, secret=secrets_, region=regions, body=st.binary(min_size=1, max_size=200),
       extra=st.dictionaries(header_names, header_values, min_size=1, max_size=3),
       which=st.sampled_from(["body", "header", "target", "secret", "method", "path", "query"]),
       data=st.data())
def test_rejects_any_change_to_a_signed_request(akid, secret, region, body, extra, which, data):
    headers, query = _sign(akid, secret, region, body, extra, [("a", "b")])
    method, path = "POST", "/"
    if which == "body":
        i = data.draw(st.integers(0, len(body) - 1))
        body = body[:i] + bytes([body[i] ^ data.draw(st.integers(1, 255))]) + body[i + 1:]
    elif which == "header":
        name = data.draw(st.sampled_from(sorted(extra)))
        headers[name.lower()] = headers[name.lower()] + "z"
    elif which == "target":
        headers["x-amz-target"] = "TrentService.Decrypt"
    elif which == "secret":
        secret = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    elif which == "method":
        method = "PUT"
    elif which == "path":
        path = "/other"
    elif which == "query":
        query = "a=c"
    req = sigv4.parse_request(method, path, query, headers, body)
    with pytest.raises(KMSError) as e:
        sigv4.SigningKeys().verify(req, secret)
    assert e.value.code == "InvalidSignatureException"


def test_signing_key_cache_is_used_and_bounded():
    keys = sigv4.SigningKeys(max_entries=2)
    headers, _ = _sign("AKIAAAAAAAAAAAAAAAAA", "s" * 40, "us-east-1", b"{}", {}, [])
    req = sigv4.parse_request("POST", "/", "", headers, b"{}")
    keys.verify(req, "s" * 40)
    assert len(keys._cache) == 1
    keys.verify(req, "s" * 40)
    assert len(keys._cache) == 1
    for r in ("eu-west-1", "eu-west-2", "eu-west-3"):
        keys.signing_key("AKIAAAAAAAAAAAAAAAAA", "s" * 40, "20260101", r, "kms")
    assert len(keys._cache) == 2
    # A different secret under the same key id never reuses the cached key.
    with pytest.raises(KMSError):
        keys.verify(req, "t" * 40)


# -- refusals before any secret is needed ----------------------------------------------

def _signed_now(**kw):
    headers, _ = _sign("AKIAAAAAAAAAAAAAAAAA", "s" * 40, "us-east-1", b"{}", {}, [])
    headers.update(kw)
    return headers


def _refusal(headers, now=None, body=b"{}"):
    with pytest.raises(KMSError) as e:
        sigv4.parse_request("POST", "/", "", headers, body, now=now)
    return e.value.code, e.value.message


def test_missing_authorization():
    h = _signed_now()
    del h["authorization"]
    assert _refusal(h) == ("MissingAuthenticationTokenException", "Missing Authentication Token")


@pytest.mark.parametrize("auth, fragment", [
    ("Basic abc", "Unsupported Authorization Type"),
    ("AWS4-HMAC-SHA256 SignedHeaders=host, Signature=" + "0" * 64, "requires 'Credential'"),
    ("AWS4-HMAC-SHA256 Credential=AKIAAAAAAAAAAAAAAAAA/20260101/us-east-1/kms/aws4_request",
     "requires 'SignedHeaders' parameter. Authorization header requires 'Signature'"),
    ("AWS4-HMAC-SHA256 Credential=A/B, SignedHeaders=host;x-amz-target, Signature=" + "0" * 64,
     "exactly 5 slash-delimited"),
    ("AWS4-HMAC-SHA256 Credential=AKIAAAAAAAAAAAAAAAAA/{d}/us-east-1/kms/aws4_xx, "
     "SignedHeaders=host;x-amz-date;x-amz-target, Signature=" + "0" * 64, "valid terminator"),
    ("AWS4-HMAC-SHA256 Credential=AKIAAAAAAAAAAAAAAAAA/{d}/US_EAST/kms/aws4_request, "
     "SignedHeaders=host;x-amz-date;x-amz-target, Signature=" + "0" * 64, "valid region"),
    ("AWS4-HMAC-SHA256 Credential=AKIAAAAAAAAAAAAAAAAA/{d}/us-east-1/kms/aws4_request, "
     "SignedHeaders=host;x-amz-date;x-amz-target, Signature=xyz", "64 lower-case hexadecimal"),
    ("AWS4-HMAC-SHA256 Credential=AKIAAAAAAAAAAAAAAAAA/{d}/us-east-1/kms/aws4_request, "
     "SignedHeaders=x-amz-date;x-amz-target, Signature=" + "0" * 64, "'host' must be a 'SignedHeader'"),
    ("AWS4-HMAC-SHA256 Credential=AKIAAAAAAAAAAAAAAAAA/{d}/us-east-1/kms/aws4_request, "
     "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64, "'x-amz-target' must be a 'SignedHeader'"),
    ("AWS4-HMAC-SHA256 Credential=AKIAAAAAAAAAAAAAAAAA/{d}/us-east-1/kms/aws4_request, "
     "SignedHeaders=x-amz-target;host;x-amz-date, Signature=" + "0" * 64, "sorted"),
    ("AWS4-HMAC-SHA256 Credential=AKIAAAAAAAAAAAAAAAAA/{d}/us-east-1/kms/aws4_request, "
     "SignedHeaders=host;x-amz-date;x-amz-target;x-missing, Signature=" + "0" * 64, "'x-missing' is missing"),
])
def test_malformed_authorization_is_incomplete_signature(auth, fragment):
    h = _signed_now()
    h["authorization"] = auth.format(d=h["x-amz-date"][:8])
    code, message = _refusal(h)
    assert code == "IncompleteSignatureException"
    assert fragment in message


def test_wrong_service_is_invalid_signature():
    h = _signed_now()
    h["authorization"] = h["authorization"].replace("/kms/", "/s3/")
    assert _refusal(h) == ("InvalidSignatureException", "Credential should be scoped to correct service: 'kms'.")


def test_malformed_access_key_is_unrecognized():
    h = _signed_now()
    h["authorization"] = h["authorization"].replace("AKIAAAAAAAAAAAAAAAAA/", "AKIA$$/")
    assert _refusal(h)[0] == "UnrecognizedClientException"


def test_missing_or_bad_date():
    h = _signed_now()
    del h["x-amz-date"]
    assert _refusal(h) == ("IncompleteSignatureException",
                           "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    h = _signed_now(**{"x-amz-date": "2026-01-01T00:00:00Z"})
    assert _refusal(h)[0] == "IncompleteSignatureException"


def test_scope_date_must_match_request_date():
    h = _signed_now()
    day = h["x-amz-date"][:8]
    h["authorization"] = h["authorization"].replace(f"/{day}/", "/19991231/")
    code, message = _refusal(h)
    assert code == "InvalidSignatureException"
    assert message.startswith("Date in Credential scope does not match YYYYMMDD") and "'19991231'" in message


@pytest.mark.parametrize("offset, ok", [(-301, False), (-299, True), (299, True), (301, False)])
def test_five_minute_skew_window(offset, ok):
    h = _signed_now()
    signed_at = _ts(h["x-amz-date"])
    now = signed_at - offset  # request time is `offset` seconds from our clock
    if ok:
        sigv4.SigningKeys().verify(sigv4.parse_request("POST", "/", "", h, b"{}", now=now), "s" * 40)
    else:
        code, message = _refusal(h, now=now)
        assert code == "InvalidSignatureException"
        assert message.startswith("Signature expired:" if offset < 0 else "Signature not yet current:")
        assert "5 min." in message


def test_date_header_instead_of_x_amz_date():
    from email.utils import formatdate

    t = int(time.time())
    amz = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t))
    req = AWSRequest(method="POST", url="http://127.0.0.1:4599/", data=b"{}",
                     headers={"X-Amz-Target": "TrentService.ListKeys", "Date": formatdate(t, usegmt=True)})
    SigV4Auth(Credentials("AKIAAAAAAAAAAAAAAAAA", "s" * 40), "kms", "us-east-1").add_auth(req)
    h = {k.lower(): v for k, v in req.headers.items()}
    h["host"] = "127.0.0.1:4599"
    assert "x-amz-date" not in h  # botocore signs with Date when the request has one
    req2 = sigv4.parse_request("POST", "/", "", h, b"{}")
    assert req2.amz_date == amz
    sigv4.SigningKeys().verify(req2, "s" * 40)


def test_unsigned_security_token_is_refused():
    h = _signed_now(**{"x-amz-security-token": "tok"})
    assert _refusal(h) == ("IncompleteSignatureException",
                           "'x-amz-security-token' must be a 'SignedHeader' in the AWS Authorization.")


def test_content_sha256_must_match_body():
    h = _signed_now(**{"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    assert _refusal(h)[0] == "InvalidSignatureException"


def test_canonical_uri_matches_botocore_normalisation():
    assert sigv4.canonical_uri("/") == "/"
    assert sigv4.canonical_uri("") == "/"
    assert sigv4.canonical_uri("/a/./b/../c//d/") == "/a/c/d/"
    assert sigv4.canonical_uri("/a b") == "/a%20b"
