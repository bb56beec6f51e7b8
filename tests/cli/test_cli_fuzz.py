"""Whatever is typed, `kms` answers with a clear message and an AWS CLI exit code, never a crash."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SYNTAX = "ab=,[]{}'\" \\:/.-_#1"
BUGS = ("Traceback", "TypeError", "AttributeError", "KeyError", "IndexError", "NameError", "UnboundLocalError")

values = st.one_of(st.text(SYNTAX, max_size=20), st.text(max_size=8),
                   st.sampled_from(["{", "[", "[]", "{}", '{"a": 1}', '[{"TagKey": 1}]', "fileb://", "file://"]))


def _check(res):
    assert res.rc in (0, 2, 255), res
    if res.rc:
        assert res.err.strip(), res
    assert not any(bug in res.err for bug in BUGS), res


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(context=values, tags=st.lists(values, max_size=3), number=values)
def test_any_option_values_fail_cleanly(cli, context, tags, number):
    _check(cli("encrypt", "--key-id", "alias/aws/s3", "--plaintext", "p", "--encryption-context", context))
    _check(cli("create-key", "--tags", *tags) if tags else cli("create-key", "--tags"))
    _check(cli("generate-random", "--number-of-bytes", number))
    _check(cli("list-keys", "--max-items", number))
    _check(cli("list-aliases", "--starting-token", context, "--output", "text"))
