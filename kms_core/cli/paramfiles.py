"""``file://`` (text) and ``fileb://`` (raw bytes) parameter values, as in the AWS CLI.

AWS CLI v1 also fetches ``http://`` and ``https://`` values; we deliberately
do not (AWS CLI v2 dropped it too): a key-management tool should not send
requests to whatever URL appears in an argument.
"""
from __future__ import annotations

import os


class ParamFileError(Exception):
    pass


def _read(prefix: str, value: str, mode: str):
    path = os.path.expandvars(os.path.expanduser(value[len(prefix) :]))
    try:
        if mode == "rb":
            with open(path, "rb") as f:
                return f.read()
        with open(path) as f:
            return f.read()
    except UnicodeDecodeError:
        raise ParamFileError(
            f"Unable to load paramfile ({path}), text contents could not be decoded.  "
            "If this is a binary file, please use the fileb:// prefix instead of the file:// prefix."
        ) from None
    except OSError as e:
        raise ParamFileError(f"Unable to load paramfile {value}: {e}") from None


LOCAL_PREFIXES = {"file://": "r", "fileb://": "rb"}


def get_paramfile(value, prefixes=LOCAL_PREFIXES):
    """The file's contents if ``value`` names one with a known prefix, else None."""
    if isinstance(value, str):
        for prefix, mode in prefixes.items():
            if value.startswith(prefix):
                return _read(prefix, value, mode)
    return None
