"""Fixtures for the audit trail's tests: an engine with the audit log attached,
and helpers to read what it stored."""
from __future__ import annotations

import json

import pytest

from kms_core.audit import AuditReader, attach

ACCOUNT = "111122223333"
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"


@pytest.fixture
def audit(engine):
    log = attach(engine)
    yield log
    log.close()


@pytest.fixture
def akms(make_client, audit):
    """A client (account root) on the audited engine."""
    return make_client()


def stored(log) -> list[dict]:
    """Every event committed so far (after flushing), oldest first."""
    assert log.flush(30), "the audit writer did not catch up"
    return [json.loads(body) for _, body in AuditReader(log.store).events()]


def raw_rows(log) -> list[str]:
    log.flush(30)
    return [body for _, body in AuditReader(log.store).events()]
