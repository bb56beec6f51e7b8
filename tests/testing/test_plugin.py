"""The pytest plugin (kms_core.testing.plugin), run as a user runs it: in a
pytester session with ``-p kms_core.testing.plugin`` (what the ``pytest11``
entry point does once the package is installed)."""
from __future__ import annotations

import boto3  # noqa: F401 - imported here so that inline pytester runs need not re-import it
import pytest

import kms_core.testing.mock  # the engine, botocore: likewise
import kms_core.testing.plugin  # noqa: F401 - likewise

pytest_plugins = ["pytester"]

PLUGIN = ("-p", "kms_core.testing.plugin", "-p", "no:cacheprovider", "-p", "no:benchmark")


def run(pytester: pytest.Pytester, *args: str, xdist: bool = False) -> pytest.RunResult:
    if xdist:
        return pytester.runpytest_subprocess(*PLUGIN, *args)
    return pytester.runpytest(*PLUGIN, "-p", "no:xdist", *args)


def test_fixtures_isolate_tests(pytester):
    pytester.makepyfile("""
        import pytest

        @pytest.mark.parametrize("n", range(4))
        def test_fresh_engine_each_time(kms_client, n):
            assert kms_client.list_keys()["Keys"] == []
            kms_client.create_key(Description=str(n))
            assert len(kms_client.list_keys()["Keys"]) == 1
    """)
    run(pytester).assert_outcomes(passed=4)


def test_client_engine_and_clock_fixtures(pytester):
    pytester.makepyfile("""
        import boto3, pytest

        def test_deletion_window(kms_client, kms_clock, kms_engine):
            key_id = kms_client.create_key()["KeyMetadata"]["KeyId"]
            kms_client.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
            kms_clock.advance(days=6)
            assert kms_client.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingDeletion"
            kms_clock.advance(days=1, seconds=1)
            with pytest.raises(kms_client.exceptions.NotFoundException):
                kms_client.describe_key(KeyId=key_id)
            # the engine fixture is the same engine
            assert kms_engine.call("ListKeys", {})["Keys"] == []

        def test_code_under_test_makes_its_own_client(kms_mock):
            def code_under_test():
                return boto3.Session().client("kms").create_key()["KeyMetadata"]["Arn"]
            assert code_under_test().startswith("arn:aws:kms:us-east-1:123456789012:key/")
    """)
    run(pytester).assert_outcomes(passed=2)


def test_marker_and_its_options(pytester):
    pytester.makepyfile("""
        import boto3, pytest

        @pytest.mark.kms_mock(region="eu-west-1", account_id="210987654321")
        def test_marked():
            arn = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
            assert arn.startswith("arn:aws:kms:eu-west-1:210987654321:key/")

        @pytest.mark.kms_mock(color="blue")
        def test_bad_option():
            pass
    """)
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*kms_mock marker takes only region, account_id, principal*"])


def test_option_runs_every_test_under_the_mock(pytester):
    pytester.makepyfile("""
        import boto3

        def test_plain():
            client = boto3.client("kms", region_name="us-east-1")
            assert client.list_keys()["Keys"] == []
            client.create_key()
    """)
    run(pytester, "--kms-mock").assert_outcomes(passed=1)


def test_scope_option_shares_the_engine(pytester):
    pytester.makepyfile("""
        def test_first(kms_client):
            kms_client.create_key()

        def test_second(kms_client):
            assert len(kms_client.list_keys()["Keys"]) == 1
    """)
    run(pytester, "--kms-scope=module").assert_outcomes(passed=2)
    run(pytester).assert_outcomes(passed=1, failed=1)  # function scope: the second starts empty


def test_isolation_between_xdist_workers(pytester):
    # Each worker has its own engine, even with one engine per session: the
    # keys a worker sees are exactly the ones its own tests created.
    pytester.makepyfile("""
        import os, pytest

        made = []

        @pytest.mark.parametrize("n", range(8))
        def test_worker_sees_only_its_keys(kms_client, n):
            made.append(kms_client.create_key()["KeyMetadata"]["KeyId"])
            seen = {k["KeyId"] for k in kms_client.list_keys()["Keys"]}
            assert seen == set(made), os.environ.get("PYTEST_XDIST_WORKER")
            print("worker", os.environ["PYTEST_XDIST_WORKER"])
    """)
    result = run(pytester, "-n", "2", "--kms-scope=session", "-s", xdist=True)
    result.assert_outcomes(passed=8)


@pytest.mark.slow
def test_kms_server_fixture_with_aws_cli_and_beside_the_mock(pytester):
    pytester.makepyfile("""
        import json, os, subprocess, sys

        def test_aws_cli(kms_server):
            env = {**os.environ, **kms_server.env}
            out = subprocess.run([sys.executable, "-m", "awscli", "kms", "create-key", "--output", "json"],
                                 env=env, capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stderr
            key_id = json.loads(out.stdout)["KeyMetadata"]["KeyId"]
            assert kms_server.client().describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"

        def test_server_client_is_not_mocked(kms_server, kms_client):
            kms_client.create_key()  # in the mock
            server_keys = kms_server.client().list_keys()["Keys"]
            assert len(server_keys) == 1  # only the key the CLI made on the server
            assert len(kms_client.list_keys()["Keys"]) == 1
            assert kms_server.secret_access_key not in repr(kms_server)
    """)
    run(pytester).assert_outcomes(passed=2)
