"""Helpers for the KMS conformance suite.

Every test here talks to the engine only through the boto3-shaped client
(``kms.create_key(...)``, ``kms.exceptions.X``, ``err.response["Error"]``), so
the same assertions would hold against real AWS KMS.  The only non-AWS hooks
are the lead's fixtures: the movable ``clock`` and ``make_client``/``pg_url``
for store-level tests.
"""
from __future__ import annotations

import contextlib
import os
import re
import uuid

import pytest
from botocore.exceptions import ClientError, ParamValidationError

import kms_core
from kms_core.clock import FakeClock
from kms_core.engine import Engine
from kms_core.settings import Settings

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
MATERIAL_ID_RE = re.compile(r"^[0-9a-f]{64}$")


class Raised:
    """What ``raises`` caught: the ClientError, its code and message."""

    err: ClientError | None = None

    @property
    def code(self) -> str:
        return self.err.response["Error"]["Code"]

    @property
    def message(self) -> str:
        return self.err.response["Error"].get("Message", "")


@contextlib.contextmanager
def _raises(kms, code, message=None, match=None):
    """Expect a botocore ClientError with AWS's ``code`` (and exact ``message``
    or a ``match`` regex), also catchable as ``kms.exceptions.<code>``."""
    caught = Raised()
    with pytest.raises(ClientError) as info:
        yield caught
    err = info.value
    caught.err = err
    got = err.response["Error"]["Code"]
    assert got == code, f"expected {code}, got {got}: {err.response['Error'].get('Message')!r}"
    assert isinstance(err, getattr(kms.exceptions, code)), f"not kms.exceptions.{code}"
    msg = err.response["Error"].get("Message", "")
    if message is not None:
        assert msg == message
    if match is not None:
        assert re.search(match, msg), f"{msg!r} !~ {match!r}"
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.fixture
def raises(kms):
    """``with raises("NotFoundException", message=...):`` on the default client."""
    return lambda code, message=None, match=None: _raises(kms, code, message, match)


@pytest.fixture
def raises_on():
    """``with raises_on(client, code, ...)`` for tests that use other clients."""
    return _raises


@contextlib.contextmanager
def rejected(kms, field=None):
    """A value botocore itself may refuse before sending (below a model
    minimum, a missing member): accept the client-side ParamValidationError
    boto3 gives, or the engine's ValidationException naming the field."""
    with pytest.raises((ParamValidationError, ClientError)) as info:
        yield
    err = info.value
    if isinstance(err, ClientError):
        assert err.response["Error"]["Code"] == "ValidationException", err.response["Error"]
        if field is not None:
            assert field in err.response["Error"]["Message"]


@pytest.fixture
def rejects(kms):
    return lambda field=None: rejected(kms, field)


@pytest.fixture
def new_key(kms):
    """Create a customer managed symmetric key; returns its KeyMetadata."""

    def make(**kwargs):
        return kms.create_key(**kwargs)["KeyMetadata"]

    return make


@pytest.fixture
def key(new_key):
    return new_key(Description="conformance")


@pytest.fixture
def arn_prefix(key):
    """``arn:aws:kms:<region>:<account>`` of the client under test."""
    return key["Arn"].rsplit(":key/", 1)[0]


def unknown_key_id() -> str:
    return str(uuid.uuid4())


def unique_alias(stem="conf") -> str:
    return f"alias/{stem}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def helpers():
    """Plain helpers, as a fixture so test modules need no imports from here."""
    return Helpers


class Helpers:
    unknown_key_id = staticmethod(unknown_key_id)
    unique_alias = staticmethod(unique_alias)
    UUID_RE = UUID_RE
    MATERIAL_ID_RE = MATERIAL_ID_RE

    @staticmethod
    def put_in_state(kms, key_id, state):
        """Move a fresh Enabled key to ``state`` through the public API."""
        if state == "Disabled":
            kms.disable_key(KeyId=key_id)
        elif state == "PendingDeletion":
            kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
        else:
            assert state == "Enabled"
        assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == state


class SharedStore:
    """One real engine on a temporary store, shared by a module's tests.

    Opening a store costs far more than most tests, so modules whose tests
    only touch keys they create themselves (unique alias names, no global
    counts) opt in by overriding ``kms``/``clock`` with this one.  It is
    parametrized over SQLite and PostgreSQL, so those modules are the core
    suite run on both backends."""

    def __init__(self, home, store_url):
        self.clock = FakeClock()
        settings = Settings.from_env(home=home, store_url=store_url,
                                     region="us-east-1", account_id="111122223333",
                                     root_key=os.urandom(32), root_key_file=home / "root.key")
        self.engine = Engine.open(settings, self.clock)
        self.client = kms_core.client(engine=self.engine)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_store(request, tmp_path_factory, new_pg_url):
    home = tmp_path_factory.mktemp("shared-kms")
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{home / 'kms.db'}"
        else:  # a private schema, like the top-level pg_url fixture but per module
            url = stack.enter_context(new_pg_url("t_core_"))
        store = SharedStore(home, url)
        yield store
        store.engine.close()
