"""Key materials made once per session: RSA 4096 generation alone takes seconds."""
from __future__ import annotations

import pytest
from keytypes_helpers import material

from kms_core import keytypes
from kms_core.keytypes.base import Material


@pytest.fixture(scope="session")
def materials() -> dict[str, Material]:
    return {spec: material(spec) for spec in keytypes.specs()}
