"""`kms demo`: the README's first command, run as a user runs it."""
from __future__ import annotations

import os
import re
import subprocess

from .conftest import KMS_SCRIPT


def _run(kms_home, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([KMS_SCRIPT, "demo", *args], capture_output=True, text=True, timeout=240,
                          env=dict(os.environ, KMS_HOME=str(kms_home)))


def test_demo_says_which_keys_it_leaves_in_the_store(kms_home):
    res = _run(kms_home)
    assert res.returncode == 0, res.stderr
    assert "the keys this demo creates stay in that store" in res.stdout
    listed = re.search(r"The demo left (\d+) new key\(s\) in (\S+):", res.stdout)
    assert listed and int(listed.group(1)) >= 1 and str(kms_home) in listed.group(2)
    customer = re.findall(r"kms schedule-key-deletion --key-id (\S+) --pending-window-in-days 7", res.stdout)
    assert len(customer) == 1  # the demo's own key; the managed keys cannot be deleted
    # what it printed is true: the key is in the store and can be scheduled for deletion
    sched = subprocess.run([KMS_SCRIPT, "schedule-key-deletion", "--key-id", customer[0],
                            "--pending-window-in-days", "7"], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, KMS_HOME=str(kms_home)))
    assert sched.returncode == 0, sched.stderr


def test_demo_temporary_leaves_nothing(kms_home):
    before = sorted(os.listdir(kms_home))
    res = _run(kms_home, "--temporary")
    assert res.returncode == 0, res.stderr
    assert "in a throw-away store, now removed" in res.stdout
    assert sorted(os.listdir(kms_home)) == before
